/**
 * AI agent sessions end to end: the real Worker, a real host-mode agent on
 * this machine, and a scripted OpenAI-compatible model (the provider is an
 * outside service; its script pins what the model does). The tenant brings
 * the provider with secrets (OPENAI_API_KEY, OPENAI_BASE_URL). Commands run
 * on the real host, files are written there, limits end sessions, a cancel
 * stops a running command's whole process group, the agent's socket drops
 * mid-command — and every session ends with exactly one terminal event.
 * Last, one session whose model is an inference cluster's real model server.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagedModelServer } from '../../host-agent/model-server/managed-server.ts';
import { newTenant, type Client } from './client.ts';
import { startHostAgent, type HostAgent } from './host-agent.ts';
import { ScriptedModel, type ScriptStep } from './scripted-model.ts';
import { readSse } from './sse.ts';
import { until } from '../until.ts';

interface Session {
  id: string;
  status: string;
  turns_used: number;
  steps_used: number;
  tokens_used: number;
  end_reason: string | null;
  summary: string | null;
  error: string | null;
}
interface Event {
  id: number;
  type: string;
  data: Record<string, unknown>;
}

const KEY = 'sk-scripted-key-0123456789';
const TERMINAL = ['completed', 'failed', 'cancelled'];

let api: Client;
let agent: HostAgent;
let model: ScriptedModel;
let base: string;
let n = 0;

beforeAll(async () => {
  model = await new ScriptedModel().start();
  api = await newTenant('agent-sessions');
  agent = await startHostAgent(api, { name: 'agent-box' });
  base = `/opencomputers/hosts/${agent.hostId}/agent`;
  for (const [name, value] of [
    ['OPENAI_API_KEY', KEY],
    ['OPENAI_BASE_URL', model.baseUrl],
  ]) {
    const r = await api.post('/opencomputers/secrets', { name, value });
    if (r.status !== 201) throw new Error(`secret ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}, 300_000);

afterAll(async () => {
  await agent?.stop();
  await model?.close();
});

/** Dispatches a session whose model (a fresh name) follows `steps`. */
async function dispatch(steps: ScriptStep[], body: Record<string, unknown> = {}, then?: ScriptStep): Promise<{ session: Session; name: string }> {
  const name = `scripted-${++n}`;
  model.script(name, steps, { key: KEY, ...(then ? { then } : {}) });
  const r = await api.post<Session>(`${base}/dispatch`, { task: 'do the thing', model_id: name, ...body });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  expect(r.body.status).toBe('pending');
  return { session: r.body, name };
}

/** The session's whole stream (it ends after the terminal event), checked for ids in order and exactly one terminal event, last. */
async function eventsOf(id: string): Promise<Event[]> {
  const res = await fetch(`${api.apiUrl}${base}/sessions/${id}/stream`, { headers: { authorization: `Bearer ${api.key}` } });
  expect(res.status).toBe(200);
  const events = (await readSse(res)).map((m) => {
    const d = JSON.parse(m.data) as { type: string; session_id: string; data: Record<string, unknown> };
    expect(d.type).toBe(m.event);
    expect(d.session_id).toBe(id);
    return { id: Number(m.id), type: d.type, data: d.data };
  });
  expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
  expect(events.filter((e) => TERMINAL.includes(e.type))).toHaveLength(1);
  expect(TERMINAL).toContain(events.at(-1)!.type);
  return events;
}

const get = async (id: string) => (await api.get<Session>(`${base}/sessions/${id}`)).body;
const pids = (pattern: string): string[] => {
  try {
    return execFileSync('pgrep', ['-f', pattern]).toString().trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

describe('agent sessions on a real host with a scripted model', () => {
  it('runs commands and writes files on the host as the model asks, then completes with its answer (secrets masked)', async () => {
    const { session, name } = await dispatch([
      { call: [{ name: 'run_command', arguments: { command: 'echo "hello from $(whoami)"; echo "key=$OPENAI_API_KEY"' } }] },
      { call: [{ name: 'write_file', arguments: { path: 'agent-out/notes.txt', content: 'written by the agent\n' } }, { name: 'read_file', arguments: { path: 'agent-out/notes.txt' } }] },
      { call: [{ name: 'list_directory', arguments: { path: 'agent-out' } }] },
      { say: 'All done: notes written.' },
    ]);
    const events = await eventsOf(session.id);
    const end = events.at(-1)!;
    expect(end.type).toBe('completed');
    expect(end.data).toMatchObject({ reason: 'done', summary: 'All done: notes written.', turns_used: 4, steps_used: 4 });
    expect(events[0]).toMatchObject({ type: 'started', data: { max_turns: 20, tools: ['run_command', 'read_file', 'write_file', 'list_directory'] } });
    const results = events.filter((e) => e.type === 'tool_result');
    expect(results.map((r) => [r.data.name, r.data.ok])).toEqual([
      ['run_command', true],
      ['write_file', true],
      ['read_file', true],
      ['list_directory', true],
    ]);
    expect(results[0].data.exit_code).toBe(0);
    expect(String(results[0].data.output)).toContain(`hello from ${agent.user.name}`);
    expect(String(results[0].data.output)).toContain('key=***');
    expect(JSON.stringify(events)).not.toContain(KEY);
    expect(String(results[2].data.output)).toContain('written by the agent');
    expect(String(results[3].data.output)).toContain('notes.txt');
    expect(events.filter((e) => e.type === 'usage').map((e) => e.data.total_tokens)).toEqual([15, 15, 15, 15]);
    expect(readFileSync(path.join(agent.home, 'agent-out/notes.txt'), 'utf8')).toBe('written by the agent\n');
    // The model saw each result and the key it was given.
    const seen = model.requests(name);
    expect(seen).toHaveLength(4);
    expect(seen[0].authorization).toBe(`Bearer ${KEY}`);
    expect(seen[1].body.messages.at(-1)).toMatchObject({ role: 'tool' });
    expect(await get(session.id)).toMatchObject({ status: 'completed', end_reason: 'done', turns_used: 4, steps_used: 4, tokens_used: 60 });
  });

  it('ends as completed with max_turns when the model never stops calling tools', async () => {
    const { session } = await dispatch([], { max_turns: 2 }, { call: [{ name: 'run_command', arguments: { command: 'true' } }] });
    const end = (await eventsOf(session.id)).at(-1)!;
    expect(end).toMatchObject({ type: 'completed', data: { reason: 'max_turns', turns_used: 2, steps_used: 2 } });
    expect(await get(session.id)).toMatchObject({ status: 'completed', end_reason: 'max_turns', turns_used: 2 });
  });

  it('ends as completed with budget when its tool calls run out, mid-turn', async () => {
    const { session } = await dispatch(
      [
        {
          call: [
            { name: 'run_command', arguments: { command: 'echo one >> budget.txt' } },
            { name: 'run_command', arguments: { command: 'echo two >> budget.txt' } },
          ],
        },
      ],
      { budget: { max_steps: 1 } },
    );
    const end = (await eventsOf(session.id)).at(-1)!;
    expect(end).toMatchObject({ type: 'completed', data: { reason: 'budget', turns_used: 1, steps_used: 1 } });
    expect(readFileSync(path.join(agent.home, 'budget.txt'), 'utf8')).toBe('one\n');
  });

  it('a cancel mid-command is a 204; the command and its children are gone and the session ends cancelled', async () => {
    const marker = `${100000 + Math.floor(Math.random() * 800000)}`;
    const { session } = await dispatch([{ call: [{ name: 'run_command', arguments: { command: `sleep ${marker}1 & sleep ${marker}2; echo never` } }] }], {}, { say: 'unreachable' });
    // Both sleeps (and the shell that started them, whose command line names them too).
    await until('the command to run on the host', async () => pids(`sleep ${marker}[12]`).length >= 2);
    const del = await api.del(`${base}/sessions/${session.id}`);
    expect(del.status).toBe(204);
    await until('the command and its child to be gone', async () => pids(`sleep ${marker}[12]`).length === 0);
    const events = await eventsOf(session.id);
    expect(events.at(-1)).toMatchObject({ type: 'cancelled', data: { reason: 'cancelled' } });
    expect(events.find((e) => e.type === 'tool_result')).toMatchObject({ data: { ok: false, error: 'stopped' } });
    expect(await get(session.id)).toMatchObject({ status: 'cancelled', end_reason: 'cancelled' });
  });

  it('ends as completed with timeout when its time runs out mid-command, and the command is gone', async () => {
    const marker = `${100000 + Math.floor(Math.random() * 800000)}`;
    const { session } = await dispatch([{ call: [{ name: 'run_command', arguments: { command: `sleep ${marker}3` } }] }], { budget: { timeout_ms: 1000 } }, { say: 'unreachable' });
    const events = await eventsOf(session.id);
    expect(events.at(-1)).toMatchObject({ type: 'completed', data: { reason: 'timeout' } });
    await until('the command to be gone', async () => pids(`sleep ${marker}3`).length === 0);
    expect(await get(session.id)).toMatchObject({ status: 'completed', end_reason: 'timeout' });
  });

  it("the agent's socket dropping mid-command does not end the session: the command finishes and the session completes", async () => {
    const { session } = await dispatch([
      { call: [{ name: 'run_command', arguments: { command: 'while [ ! -e go-on ]; do sleep 0.1; done; echo survived the drop' } }] },
      { say: 'finished after the drop' },
    ]);
    await until('the command to run', async () => pids('while \\[ ! -e go-on \\]').length > 0);
    agent.drop();
    // The command goes on while the agent redials; let it end once the drop is done.
    await until('the agent to be back online', async () => (await api.get<{ status: string }>(`/opencomputers/hosts/${agent.hostId}`)).body.status === 'online');
    execFileSync('touch', [path.join(agent.home, 'go-on')]);
    const events = await eventsOf(session.id);
    expect(events.at(-1)).toMatchObject({ type: 'completed', data: { reason: 'done', summary: 'finished after the drop' } });
    const result = events.find((e) => e.type === 'tool_result')!;
    expect(result.data).toMatchObject({ ok: true, exit_code: 0 });
    expect(String(result.data.output)).toContain('survived the drop');
  });

  it('a model that refuses ends the session failed with model_error, saying what it said', async () => {
    const { session } = await dispatch([{ status: 400, error: 'this model does not take tools' }]);
    const end = (await eventsOf(session.id)).at(-1)!;
    expect(end).toMatchObject({ type: 'failed', data: { reason: 'model_error' } });
    expect(String(end.data.error)).toContain('this model does not take tools');
  });
});

describe('an agent session whose model is an inference cluster', () => {
  let dir: string;
  let server: ManagedModelServer;
  let gpu: HostAgent;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-agent-model-'));
    server = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 1, threads: 1 });
    await server.start();
    gpu = await startHostAgent(api, { name: 'agent-gpu', args: ['--model-server', `http://127.0.0.1:${server.port}`] });
  }, 300_000);

  afterAll(async () => {
    await gpu?.stop().catch(() => {});
    await server?.stop().catch(() => {});
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs against the cluster's real model server and ends with exactly one terminal event", async () => {
    const c = await api.post<{ id: string; slug: string }>('/opencomputers/clusters', { name: 'agent-model', model: 'hangar-tiny', host_ids: [gpu.hostId] });
    expect(c.status).toBe(201);
    await until('the cluster to be active', async () => (await api.get<{ status: string }>(`/opencomputers/clusters/${c.body.id}`)).body.status === 'active', 120_000);
    const r = await api.post<Session & { model: string }>(`${base}/dispatch`, {
      task: 'say something',
      model_id: c.body.slug,
      max_turns: 2,
      tools: ['list_directory'],
      // Each call then asks for at most this many tokens: the tiny model's context holds the prompt and that, not the default 4096 more.
      budget: { max_tokens: 64 },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.model).toBe('hangar-tiny');
    const events = await eventsOf(r.body.id);
    // The tiny model's words are noise; what is shown is the path: its answers came back as turns.
    expect(events.filter((e) => e.type === 'message').length, JSON.stringify(events)).toBeGreaterThanOrEqual(1);
    expect(events.filter((e) => e.type === 'usage').length).toBeGreaterThanOrEqual(1);
    const end = events.at(-1)!;
    expect(end.type, JSON.stringify(end)).toBe('completed');
    expect(['done', 'max_turns', 'budget']).toContain(end.data.reason);
  });
});
