/**
 * AI agent sessions' routes in the Worker: the dispatch body checked, a
 * 422 that says what to set when there is no model, the session in the
 * page's shape, its events as SSE with ids, Last-Event-ID resume and exactly
 * one terminal event, cancel, and another tenant's key a 404 on every route.
 * The model here is a cluster with no member up (its proxy answers 503
 * "no member" until the session gives up: failed, model_error) — no outside
 * service is needed. Sessions that run commands on a real host against a
 * scripted model: test/e2e/agent-sessions.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { OC, registerTenantHost } from './host-mode-peer.ts';
import { HOST_ROUTE_SAMPLES } from '../host-routes.ts';
import { ROUTES as ROUTE_TABLE } from '../../worker/routes/index.ts';

useAgentPeers();

interface Session {
  id: string;
  host_id: string;
  task: string;
  status: string;
  max_turns: number;
  turns_used: number;
  end_reason: string | null;
  error: string | null;
  summary: string | null;
  completed_at: string | null;
  tools: string[];
  budget: { max_steps: number; max_tokens: number | null; timeout_ms: number };
}
interface Sse {
  id: number;
  event: string;
  data: { type: string; session_id: string; data: Record<string, unknown>; timestamp: string };
}

function parseSse(text: string): Sse[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n'))
    .filter((lines) => lines.some((l) => l.startsWith('data:')))
    .map((lines) => ({
      id: Number(lines.find((l) => l.startsWith('id:'))!.slice(3).trim()),
      event: lines.find((l) => l.startsWith('event:'))!.slice(6).trim(),
      data: JSON.parse(lines.find((l) => l.startsWith('data:'))!.slice(5)),
    }));
}

async function ownerWithCluster() {
  const owner = await createTenant();
  const host = await registerTenantHost(owner.apiKey, { name: 'agent-box' });
  const cluster = await expectJson<{ id: string; slug: string }>(await tenantFetch(owner.apiKey, `${OC}/clusters`, { method: 'POST', body: { name: 'Agents', model: 'hangar-tiny', host_ids: [host.id] } }), 201);
  return { owner, host, cluster, base: `${OC}/hosts/${host.id}/agent` };
}

/** The whole stream of a session that ends (the server closes it after the terminal event). */
async function allEvents(apiKey: string, path: string, lastEventId?: number): Promise<{ status: number; events: Sse[] }> {
  const res = await tenantFetch(apiKey, path, lastEventId === undefined ? {} : { headers: { 'last-event-id': String(lastEventId) } });
  if (res.status === 204) return { status: 204, events: [] };
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  return { status: 200, events: parseSse(await res.text()) };
}

const TERMINAL = ['completed', 'failed', 'cancelled'];

describe('agent session routes', () => {
  it('the walked list covers every agent route of the table', () => {
    const walked = new Set(HOST_ROUTE_SAMPLES.map((r) => `${r.method} ${r.pattern}`));
    const table = ROUTE_TABLE.filter((d) => d.path.startsWith(`${OC}/hosts/:id/agent`)).map((d) => `${d.method} ${d.path}`);
    expect(table.length).toBe(6);
    expect(table.filter((t) => !walked.has(t))).toEqual([]);
  });

  it('with no model anywhere, dispatch is a 422 that names the secrets to set; bad bodies are 400s', async () => {
    const owner = await createTenant();
    const host = await registerTenantHost(owner.apiKey);
    const url = `${OC}/hosts/${host.id}/agent/dispatch`;
    const err = await expectError(await tenantFetch(owner.apiKey, url, { method: 'POST', body: { task: 'say hi' } }), 422, 'MODEL_NOT_CONFIGURED');
    expect(err.error.message).toContain('OPENAI_API_KEY');
    for (const body of [{}, { task: '' }, { task: 'x', max_turns: 0 }, { task: 'x', max_turns: 501 }, { task: 'x', tools: ['rm_rf'] }, { task: 'x', budget: { max_steps: 0 } }, { task: 'x', budget: { sneaky: 1 } }, { task: 'x', context: 'not an object' }]) {
      await expectError(await tenantFetch(owner.apiKey, url, { method: 'POST', body }), 400, 'VALIDATION_FAILED');
    }
    const list = await expectJson<{ data: Session[]; meta: { total: number } }>(await tenantFetch(owner.apiKey, `${OC}/hosts/${host.id}/agent/sessions`), 200);
    expect(list.meta.total).toBe(0);
  });

  it("dispatch answers 201 with the session in the page's shape; its stream has ids, starts, and ends with exactly one terminal event", async () => {
    const { owner, host, cluster, base } = await ownerWithCluster();
    const s = await expectJson<Session>(
      await tenantFetch(owner.apiKey, `${base}/dispatch`, { method: 'POST', body: { task: 'list my home', model_id: cluster.slug, max_turns: 3, tools: ['list_directory', 'run_command'], budget: { max_steps: 7 } } }),
      201,
    );
    expect(s).toMatchObject({ host_id: host.id, task: 'list my home', status: 'pending', max_turns: 3, turns_used: 0, completed_at: null, error: null, tools: ['run_command', 'list_directory'] });
    expect(s.budget).toEqual({ max_steps: 7, max_tokens: null, timeout_ms: 1_800_000 });
    for (const k of ['id', 'host_id', 'task', 'status', 'max_turns', 'turns_used', 'created_at', 'updated_at', 'completed_at', 'error']) expect(s).toHaveProperty(k);

    const { events } = await allEvents(owner.apiKey, `${base}/sessions/${s.id}/stream`);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events[0].event).toBe('started');
    expect(events[0].data).toMatchObject({ type: 'started', session_id: s.id, data: { max_turns: 3, tools: ['run_command', 'list_directory'] } });
    expect(events.filter((e) => TERMINAL.includes(e.event))).toHaveLength(1);
    const end = events.at(-1)!;
    expect(end.event).toBe('failed');
    expect(end.data.data).toMatchObject({ reason: 'model_error', turns_used: 0, steps_used: 0 });
    expect(String(end.data.data.error)).toContain('no member');

    const got = await expectJson<Session>(await tenantFetch(owner.apiKey, `${base}/sessions/${s.id}`), 200);
    expect(got).toMatchObject({ id: s.id, status: 'failed', end_reason: 'model_error' });
    expect(got.completed_at).not.toBeNull();
    const list = await expectJson<{ data: Session[]; meta: { total: number; page: number; per_page: number } }>(await tenantFetch(owner.apiKey, `${base}/sessions?per_page=1`), 200);
    expect(list.meta).toEqual({ total: 1, page: 1, per_page: 1 });
    expect(list.data.map((x) => x.id)).toEqual([s.id]);
  });

  it('the stream resumes after Last-Event-ID with no event lost or repeated; /events is the same; a viewer that has the end gets 204', async () => {
    const { owner, cluster, base } = await ownerWithCluster();
    const s = await expectJson<Session>(await tenantFetch(owner.apiKey, `${base}/dispatch`, { method: 'POST', body: { task: 't', model_id: cluster.id } }), 201);
    const all = (await allEvents(owner.apiKey, `${base}/sessions/${s.id}/stream`)).events;
    expect(all.length).toBeGreaterThanOrEqual(2);
    const rest = (await allEvents(owner.apiKey, `${base}/sessions/${s.id}/events`, 1)).events;
    expect(rest).toEqual(all.slice(1));
    expect((await allEvents(owner.apiKey, `${base}/sessions/${s.id}/stream`, all.at(-1)!.id)).status).toBe(204);
  });

  it('DELETE cancels: 204, the session ends cancelled with exactly one terminal event; a second DELETE changes nothing', async () => {
    const { owner, cluster, base } = await ownerWithCluster();
    const s = await expectJson<Session>(await tenantFetch(owner.apiKey, `${base}/dispatch`, { method: 'POST', body: { task: 't', model: cluster.slug } }), 201);
    const del = await tenantFetch(owner.apiKey, `${base}/sessions/${s.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    const got = await expectJson<Session>(await tenantFetch(owner.apiKey, `${base}/sessions/${s.id}`), 200);
    expect(got).toMatchObject({ status: 'cancelled', end_reason: 'cancelled' });
    expect((await tenantFetch(owner.apiKey, `${base}/sessions/${s.id}`, { method: 'DELETE' })).status).toBe(204);
    const { events } = await allEvents(owner.apiKey, `${base}/sessions/${s.id}/stream`);
    expect(events.filter((e) => TERMINAL.includes(e.event)).map((e) => [e.event, e.data.data.reason])).toEqual([['cancelled', 'cancelled']]);
  });

  it("another tenant's key gets 404 on every agent route, and the owner's session goes on unchanged; malformed ids are 400s", async () => {
    const { owner, cluster, base } = await ownerWithCluster();
    const s = await expectJson<Session>(await tenantFetch(owner.apiKey, `${base}/dispatch`, { method: 'POST', body: { task: 't', model_id: cluster.slug } }), 201);
    const intruder = await createTenant();
    for (const [method, path] of [
      ['POST', '/dispatch'],
      ['GET', '/sessions'],
      ['GET', `/sessions/${s.id}`],
      ['GET', `/sessions/${s.id}/stream`],
      ['GET', `/sessions/${s.id}/events`],
      ['DELETE', `/sessions/${s.id}`],
    ]) {
      const res = await tenantFetch(intruder.apiKey, `${base}${path}`, method === 'POST' ? { method, body: { task: 'steal', model_id: cluster.slug } } : { method });
      await expectError(res, 404, 'NOT_FOUND');
    }
    // The owner's other host does not reach this host's session either.
    const other = await registerTenantHost(owner.apiKey, { name: 'other' });
    await expectError(await tenantFetch(owner.apiKey, `${OC}/hosts/${other.id}/agent/sessions/${s.id}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(owner.apiKey, `${base}/sessions/not-a-uuid`), 400, 'INVALID_ID');
    const { events } = await allEvents(owner.apiKey, `${base}/sessions/${s.id}/stream`);
    expect(events.at(-1)!.data.data.reason).toBe('model_error');
  });
});
