/**
 * Events (issue 11): a computer's status changes with their reasons and its
 * sessions, on its own SSE stream and on the organization's, with ids,
 * Last-Event-ID resume, filters and the credential's scope.
 */
import { SELF, runDurableObjectAlarm, env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, createApiKey, createWorkspace, expectError, expectJson, operatorFetch, tenantFetch, uniqueSlug } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub, createComputer, runningComputer, world, type World } from './computer-fixtures.ts';
import { SseReader, type SseMessage } from '../e2e/sse.ts';
import { archiveBytes, moveWorld, scriptExport, scriptTarget } from './move-fixtures.ts';

useAgentPeers();

interface Envelope {
  id: string;
  type: string;
  computer_id?: string;
  session_id?: string;
  workspace_id: string | null;
  project_id: string | null;
  data: Record<string, unknown>;
  timestamp: string;
}

const parse = (m: SseMessage): Envelope => JSON.parse(m.data) as Envelope;

/** Opens a stream (path under /api/v1) with the tenant's key; `from` is a Last-Event-ID. */
async function open(key: string, path: string, from?: string): Promise<SseReader> {
  const res = await tenantFetch(key, `/api/v1${path}`, { headers: from === undefined ? {} : { 'last-event-id': from } });
  if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  return new SseReader(res);
}

/** The next messages until one of `type` arrives (all of them, in order). */
async function until(reader: SseReader, type: string): Promise<Envelope[]> {
  const seen: Envelope[] = [];
  for (;;) {
    const m = await reader.next();
    if (!m) throw new Error(`stream ended before ${type}; saw ${seen.map((e) => e.type).join(', ')}`);
    expect(m.event).toBe(parse(m).type);
    expect(m.id).toBe(parse(m).id);
    seen.push(parse(m));
    if (m.event === type) return seen;
  }
}

const types = (es: Envelope[]) => es.map((e) => e.type);

describe("a computer's event stream", () => {
  it('replays from the start with last_event_id=0: created, provisioned, then a stop with its reason', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const reader = await open(w.tenant.apiKey, `/computers/${computer.id}/events`, '0');
    const boot = await until(reader, 'computer.running');
    expect(types(boot)).toEqual(['computer.created', 'computer.running']);
    expect(boot[0]).toMatchObject({ computer_id: computer.id, workspace_id: w.tenant.workspaceId, project_id: w.tenant.projectId, data: { status: 'provisioning', reason: 'created', name: 'dev box' } });
    expect(boot[1].data).toEqual({ status: 'running', previous_status: 'provisioning', reason: 'provisioned' });
    expect(boot[1].timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    const stop = await until(reader, 'computer.stopped');
    expect(stop.map((e) => [e.type, e.data.reason])).toEqual([
      ['computer.stopping', 'requested'],
      ['computer.stopped', 'requested'],
    ]);
    const ids = [...boot, ...stop].map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    await reader.close();
  });

  it('without Last-Event-ID starts from now; with it resumes after that event, nothing lost or repeated', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const live = await open(w.tenant.apiKey, `/computers/${computer.id}/events`);
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    const first = await until(live, 'computer.stopped');
    expect(types(first)).toEqual(['computer.stopping', 'computer.stopped']);
    await live.close();

    // While nobody watches: a start.
    await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
    const resumed = await open(w.tenant.apiKey, `/computers/${computer.id}/events`, first[0].id);
    expect(types(await until(resumed, 'computer.running'))).toEqual(['computer.stopped', 'computer.starting', 'computer.running']);
    await resumed.close();
    // ?last_event_id= works as the header does (EventSource cannot set headers on a first connection).
    const byQuery = await open(w.tenant.apiKey, `/computers/${computer.id}/events?last_event_id=${first[1].id}`);
    expect(types(await until(byQuery, 'computer.running'))).toEqual(['computer.starting', 'computer.running']);
    await byQuery.close();
  });

  it('says why: auto-stopped, credits exhausted, exited on its own (with the message), failed', async () => {
    const w = await world({ credits: 5 });
    const idle = await runningComputer(w);
    const broke = await runningComputer(w);
    const crashed = await runningComputer(w);
    const readers = await Promise.all([idle, broke, crashed].map((c) => open(w.tenant.apiKey, `/computers/${c.computer.id}/events`)));

    await expectJson(await w.api(`/${idle.computer.id}/auto-stop`, { method: 'PATCH', body: { seconds: 1 } }), 200);
    await sleep(1100);
    await runDurableObjectAlarm(computerStub(idle.computer.id));
    expect((await until(readers[0], 'computer.stopped')).map((e) => e.data.reason)).toEqual(['auto_stopped', 'auto_stopped']);

    crashed.peer.send({ type: 'computer.exited', reason: 'the computer ran out of memory and its init was killed' });
    expect((await until(readers[2], 'computer.stopped')).at(-1)!.data).toEqual({
      status: 'stopped',
      previous_status: 'running',
      reason: 'exited',
      message: 'the computer ran out of memory and its init was killed',
    });

    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/credits`, { method: 'POST', body: { amount: -10, reason: 'test' } }), 201);
    await runDurableObjectAlarm(computerStub(broke.computer.id));
    expect((await until(readers[1], 'computer.stopped')).map((e) => e.data.reason)).toEqual(['credits_exhausted', 'credits_exhausted']);
    await Promise.all(readers.map((r) => r.close()));
  });

  it('a move says moving, then stopped with the reason moved and the new region', async () => {
    const m = await moveWorld();
    const reader = await open(m.tenant.apiKey, `/computers/${m.computer.id}/events?types=computer.*`);
    scriptExport(m.source, archiveBytes(12_345));
    const pending = m.move();
    await scriptTarget(m.far, m.computer.id);
    await expectJson(await pending, 200);
    const seen = await until(reader, 'computer.stopped');
    expect(seen.map((e) => [e.type, e.data.reason])).toEqual([
      ['computer.moving', 'requested'],
      ['computer.stopped', 'moved'],
    ]);
    expect(seen[1].data).toMatchObject({ status: 'stopped', previous_status: 'moving', region: m.far.region });
    await reader.close();
  });

  it('a failed start says failed, with what the host said', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    const reader = await open(w.tenant.apiKey, `/computers/${computer.id}/events`);
    peer.onRequest('computer.start', () => ({ error: { code: 'FAILED', message: 'no room on the disk' } }));
    await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 502, 'AGENT_ERROR');
    const events = await until(reader, 'computer.stopped');
    expect(events.map((e) => [e.type, e.data.reason, e.data.message])).toEqual([
      ['computer.starting', 'requested', undefined],
      ['computer.stopped', 'failed', 'boot failed: no room on the disk'],
    ]);
    await reader.close();
  });

  it('shows exec and terminal sessions starting and ending', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const reader = await open(w.tenant.apiKey, `/computers/${computer.id}/events`);

    await expectJson(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'echo hi' } }), 200);
    const sync = await until(reader, 'exec.ended');
    expect(sync.map((e) => e.type)).toEqual(['exec.started', 'exec.ended']);
    expect(sync[0].data).toMatchObject({ kind: 'sync', command: 'echo hi' });
    expect(sync[1].data).toMatchObject({ kind: 'sync', exit_code: 0, timed_out: false });
    expect(sync[1].session_id).toBe(sync[0].session_id);
    // Sync exec is a process too: its start is the first the agent saw.
    expect((await peer.take('proc.start')).params.proc_id).toBe(sync[0].session_id);

    await expectJson(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'make test' } }), 202);
    const procId = (await peer.take('proc.start')).params.proc_id;
    const started = await until(reader, 'exec.started');
    expect(started.at(-1)).toMatchObject({ session_id: procId, data: { session_id: procId, kind: 'stream', command: 'make test' } });
    peer.exit(procId, 2);
    expect((await until(reader, 'exec.ended')).at(-1)).toMatchObject({ session_id: procId, data: { kind: 'stream', exit_code: 2, timed_out: false } });

    const term = await expectJson<{ data: { session_id: string } }>(await w.api(`/${computer.id}/terminal`, { method: 'POST', body: {} }), 201);
    expect((await until(reader, 'terminal.started')).at(-1)!.data).toEqual({ session_id: term.data.session_id, shell: '/bin/bash' });
    peer.exit(term.data.session_id, 0);
    expect((await until(reader, 'terminal.ended')).at(-1)!.data).toMatchObject({ session_id: term.data.session_id, exit_code: 0 });
    await reader.close();
  });

  it('takes a stream token for EventSource; a bad one is a 401, another tenant a 404, a bad id a 400', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const { token } = await expectJson<{ token: string }>(await w.api(`/${computer.id}/stream-token`, { method: 'POST' }), 200);
    const res = await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/events?auth=${encodeURIComponent(token)}&last_event_id=0`);
    expect(res.status).toBe(200);
    const reader = new SseReader(res);
    expect((await reader.next())?.event).toBe('computer.created');
    await reader.close();

    await expectError(await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/events?auth=nope`), 401, 'UNAUTHORIZED');
    await expectError(await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/events`), 401, 'UNAUTHORIZED');
    const other = await world();
    await expectError(await other.api(`/${computer.id}/events`), 404, 'NOT_FOUND');
    await expectError(await w.api(`/not-an-id/events`), 400, 'INVALID_ID');
    for (const q of ['?last_event_id=abc', '?last_event_id=-1', '?types=Bad', '?types=']) {
      const err = await expectError(await w.api(`/${computer.id}/events${q}`), 400, 'VALIDATION_FAILED');
      expect(err.error.message, q).toMatch(/^(last_event_id|types|query)/);
    }
  });

  it('sends a heartbeat comment while nothing happens', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const reader = await open(w.tenant.apiKey, `/computers/${computer.id}/events`);
    const item = await reader.nextItem();
    expect(item).toEqual({ comment: 'heartbeat' });
    await reader.close();
  }, 40_000);
});

describe('the organization event stream', () => {
  /** Two computers in two workspaces of one organization, each stopped once. */
  async function twoWorkspaces(): Promise<{ w: World; a: string; b: string; wsB: string }> {
    const w = await world();
    const wsB = await createWorkspace(w.tenant.apiKey, uniqueSlug('ws'));
    const a = (await runningComputer(w)).computer.id;
    const b = (await runningComputer(w, { workspace_id: wsB })).computer.id;
    return { w, a, b, wsB };
  }

  it('carries every computer of the organization; workspace, computer and type filters narrow it', async () => {
    const { w, a, b, wsB } = await twoWorkspaces();
    const all = await open(w.tenant.apiKey, '/events?last_event_id=0');
    const seen = new Set<string>();
    for (let n = 0; n < 4; n++) {
      const e = parse((await all.next())!);
      seen.add(`${e.computer_id === a ? 'a' : e.computer_id === b ? 'b' : '?'} ${e.type}`);
    }
    expect([...seen].sort()).toEqual(['a computer.created', 'a computer.running', 'b computer.created', 'b computer.running']);
    await all.close();

    const onlyB = await open(w.tenant.apiKey, `/events?workspace_id=${wsB}&types=computer.stopped&last_event_id=0`);
    const byComputer = await open(w.tenant.apiKey, `/events/stream?computer_id=${a}&types=computer.*&last_event_id=0`);
    await expectJson(await w.api(`/${a}/stop`, { method: 'POST' }), 200);
    await expectJson(await w.api(`/${b}/stop`, { method: 'POST' }), 200);
    const e = parse((await onlyB.next())!);
    expect([e.type, e.computer_id]).toEqual(['computer.stopped', b]);
    expect(types(await until(byComputer, 'computer.stopped'))).toEqual(['computer.created', 'computer.running', 'computer.stopping', 'computer.stopped']);
    await Promise.all([onlyB.close(), byComputer.close()]);
  });

  it('a project filter, by id or by slug, narrows it to that project’s computers', async () => {
    const w = await world();
    const slug = uniqueSlug('proj');
    const project = await expectJson<{ data: { id: string } }>(await tenantFetch(w.tenant.apiKey, '/api/v1/projects', { method: 'POST', body: { name: 'side', slug } }), 201);
    const inDefault = (await runningComputer(w)).computer.id;
    const inProject = (await runningComputer(w, { project_id: project.data.id })).computer.id;
    for (const query of [`project_id=${project.data.id}`, `project_slug=${slug}`]) {
      const reader = await open(w.tenant.apiKey, `/events?${query}&last_event_id=0`);
      const seen = await until(reader, 'computer.running');
      expect(seen.map((e) => [e.type, e.computer_id, e.project_id]), query).toEqual([
        ['computer.created', inProject, project.data.id],
        ['computer.running', inProject, project.data.id],
      ]);
      await reader.close();
    }
    // The default project's stream has the other computer (made first), not this one.
    const other = await open(w.tenant.apiKey, `/events?project_id=${w.tenant.projectId}&last_event_id=0`);
    expect((await until(other, 'computer.running')).map((e) => e.computer_id)).toEqual([inDefault, inDefault]);
    await other.close();
  });

  it("a key bound to a workspace sees only that workspace's computers; another organization sees none", async () => {
    const { w, a, b, wsB } = await twoWorkspaces();
    const scoped = await createApiKey(w.tenant.orgId, { workspaceIds: [wsB] });
    const reader = await open(scoped.key, '/events?last_event_id=0');
    const first = [parse((await reader.next())!), parse((await reader.next())!)];
    expect(first.map((e) => e.computer_id)).toEqual([b, b]);
    await expectError(await tenantFetch(scoped.key, `/api/v1/events?workspace_id=${w.tenant.workspaceId}`), 403, 'FORBIDDEN');
    await expectError(await tenantFetch(scoped.key, `/api/v1/computers/${a}/events`), 403, 'FORBIDDEN');

    const stranger = await world();
    const theirs = await open(stranger.tenant.apiKey, '/events?last_event_id=0');
    const mine = (await runningComputer(stranger)).computer.id;
    const e = parse((await theirs.next())!);
    expect(e.computer_id).toBe(mine);
    await Promise.all([reader.close(), theirs.close()]);
  });

  it('the last events of a deleted computer still arrive', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const reader = await open(w.tenant.apiKey, `/events?computer_id=${computer.id}`);
    await expectJson(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);
    expect(types(await until(reader, 'computer.deleted'))).toEqual(['computer.deleting', 'computer.deleted']);
    await reader.close();
  });

  it('takes a batch a producer sends twice only once', async () => {
    const org = crypto.randomUUID();
    const stub = env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(org));
    const event = { type: 'computer.test', refs: { computer_id: crypto.randomUUID() }, workspace_id: null, project_id: null, data: {}, at: Date.now() };
    const batch = { source: 'computer:x', events: [{ seq: 1, event }, { seq: 2, event }] };
    expect(await stub.publish(batch)).toEqual({ ok: true, value: 2 });
    expect(await stub.publish(batch)).toEqual({ ok: true, value: 0 });
    expect(await stub.publish({ ...batch, events: [{ seq: 3, event }] })).toEqual({ ok: true, value: 1 });
    expect(await stub.lastEventId()).toBe(3);
    expect((await stub.publish({ source: 'x', events: [{ seq: 1, event: { ...event, type: 'Not A Type' } }] })).ok).toBe(false);
  });
});

describe('events of a computer that was never running', () => {
  it('a created computer shows created, even before its host attaches', async () => {
    const w = await world();
    const c = await createComputer(w);
    const reader = await open(w.tenant.apiKey, `/computers/${c.id}/events?last_event_id=0`);
    expect(parse((await reader.next())!)).toMatchObject({ type: 'computer.created', data: { status: 'provisioning' } });
    await reader.close();
  });
});
