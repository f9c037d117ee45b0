/**
 * The agent loop against a scripted OpenAI-compatible model over real HTTP
 * (streamed answers, tool-call arguments in pieces), with its tools running
 * real commands and files on this machine. Every case checks that the
 * session ends with exactly one terminal event and says why.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatCompletion } from '../../durable-objects/agent-session/openai-client.ts';
import { SessionEvents, type SessionEvent } from '../../durable-objects/agent-session/session-events.ts';
import { LoopStop, newLoopState, runLoop, type LoopState } from '../../durable-objects/agent-session/session-loop.ts';
import { TOOL_NAMES, type Budget } from '../../schema/api-agents.ts';
import { ScriptedModel, type ScriptStep } from '../e2e/scripted-model.ts';
import { LocalHostTools } from './local-host-tools.ts';

let model: ScriptedModel;
let home: string;
let n = 0;

beforeAll(async () => {
  model = await new ScriptedModel().start();
  home = mkdtempSync(path.join(os.tmpdir(), 'hangar-loop-'));
});
afterAll(async () => {
  await model.close();
  rmSync(home, { recursive: true, force: true });
});

const BUDGET: Budget = { max_turns: 20, max_steps: 200, max_tokens: null, timeout_ms: 60_000 };

interface Run {
  state: LoopState;
  events: SessionEvent[];
  snapshots: LoopState[];
  host: LocalHostTools;
  name: string;
}

/** Runs a session whose model follows `steps`; `during` gets the run while it goes (to cancel it, say). */
async function session(steps: ScriptStep[], opts: { budget?: Partial<Budget>; then?: ScriptStep; secrets?: string[]; stream?: boolean; modelTimeoutMs?: number; task?: string; during?: (r: Run, stop: AbortController) => Promise<void>; state?: LoopState; name?: string; host?: LocalHostTools } = {}): Promise<Run> {
  const name = opts.name ?? `m${++n}`;
  if (!opts.state) model.script(name, steps, { then: opts.then, key: 'sk-test-key' });
  const run: Run = { state: opts.state ?? newLoopState(opts.task ?? 'do the thing', { repo: 'x' }, { ...BUDGET, ...opts.budget }, [...TOOL_NAMES]), events: [], snapshots: [], host: opts.host ?? new LocalHostTools(home), name };
  const mask = (s: string) => (opts.secrets ?? []).reduce((t, v) => t.split(v).join('***'), s);
  const stop = new AbortController();
  const events = new SessionEvents('sess_1', mask, (e) => run.events.push(e), run.state.end_reason !== null);
  const loop = runLoop(
    run.state,
    {
      now: () => Date.now(),
      callModel: (req, signal) => chatCompletion({ baseUrl: model.baseUrl, apiKey: 'sk-test-key', model: name }, req, { timeoutMs: opts.modelTimeoutMs ?? 30_000, stream: opts.stream, signal, retryDelays: [50, 50] }),
      host: run.host,
      events,
      persist: (s) => void run.snapshots.push(structuredClone(s)),
    },
    stop.signal,
  );
  await Promise.all([loop, opts.during?.(run, stop)]);
  return run;
}

function terminal(run: Run): SessionEvent {
  const ends = run.events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.type));
  expect(ends, 'exactly one terminal event').toHaveLength(1);
  expect(run.events.at(-1)).toBe(ends[0]);
  return ends[0];
}

/** Pids of processes whose command line holds `text` (pgrep leaves itself out). */
function processesMatching(text: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', text]).toString().trim().split('\n');
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

const types = (run: Run) => run.events.map((e) => e.type);

describe('agent loop', () => {
  it('runs the commands and writes the files the model asks for, then completes with its answer', async () => {
    const run = await session([
      { say: 'Looking.', call: [{ name: 'run_command', arguments: { command: 'mkdir -p proj && echo "hello from $0" > proj/a.txt && cat proj/a.txt' } }] },
      { call: [{ name: 'write_file', arguments: { path: 'proj/b.txt', content: 'written by the agent\n' } }, { name: 'list_directory', arguments: { path: 'proj' } }] },
      { call: [{ name: 'read_file', arguments: { path: 'proj/b.txt' } }] },
      { say: 'All done: two files in proj.' },
    ]);
    const end = terminal(run);
    expect(end.type).toBe('completed');
    expect(end.data).toMatchObject({ reason: 'done', summary: 'All done: two files in proj.', turns_used: 4, steps_used: 4, tokens_used: 60 });
    expect(types(run)).toEqual(['started', 'message', 'usage', 'tool_call', 'tool_result', 'message', 'usage', 'tool_call', 'tool_result', 'tool_call', 'tool_result', 'message', 'usage', 'tool_call', 'tool_result', 'message', 'usage', 'completed']);
    expect(readFileSync(path.join(home, 'proj/a.txt'), 'utf8')).toBe('hello from bash\n');
    expect(readFileSync(path.join(home, 'proj/b.txt'), 'utf8')).toBe('written by the agent\n');
    const first = run.events.find((e) => e.type === 'tool_result')!;
    expect(first.data).toMatchObject({ name: 'run_command', ok: true, exit_code: 0 });
    expect(first.data.output).toContain('hello from bash');
    expect(run.events.find((e) => e.type === 'tool_call')!.data.arguments).toEqual({ command: expect.stringContaining('mkdir -p proj') });
    // The model saw the tools, the task with its context, and each result in the next request.
    const reqs = model.requests(run.name);
    expect(reqs).toHaveLength(4);
    expect(reqs[0].authorization).toBe('Bearer sk-test-key');
    expect(reqs[0].body.tools!.map((t) => t.function.name).sort()).toEqual([...TOOL_NAMES].sort());
    expect(reqs[0].body.messages[1].content).toContain('"repo": "x"');
    const toolMsgs = reqs[2].body.messages.filter((m) => m.role === 'tool');
    expect(toolMsgs.map((m) => m.content)).toEqual([expect.stringContaining('hello from bash'), 'wrote 21 bytes to proj/b.txt', expect.stringMatching(/^a\.txt\t\d+\nb\.txt\t21$/)]);
    expect(reqs[3].body.messages.at(-1)!.content).toBe('written by the agent\n');
    expect(run.state.status).toBe('completed');
  });

  it('reads non-streamed answers the same way', async () => {
    const run = await session([{ call: [{ name: 'run_command', arguments: { command: 'echo plain' } }] }, { say: 'ok' }], { stream: false });
    expect(terminal(run).data).toMatchObject({ reason: 'done', turns_used: 2, steps_used: 1 });
    expect(run.events.find((e) => e.type === 'tool_result')!.data.output).toContain('plain');
  });

  it('ends as completed with max_turns when the model never stops calling tools', async () => {
    const run = await session([], { then: { call: [{ name: 'list_directory', arguments: {} }] }, budget: { max_turns: 3 } });
    expect(terminal(run)).toMatchObject({ type: 'completed', data: { reason: 'max_turns', turns_used: 3, steps_used: 3 } });
    expect(model.requests(run.name)).toHaveLength(3);
  });

  it('ends with budget when the tool-call steps run out, even mid-turn', async () => {
    const run = await session([], { then: { call: [{ name: 'run_command', arguments: { command: 'true' } }, { name: 'run_command', arguments: { command: 'true' } }] }, budget: { max_steps: 3 } });
    expect(terminal(run)).toMatchObject({ type: 'completed', data: { reason: 'budget', turns_used: 2, steps_used: 3 } });
  });

  it('ends with budget when the tokens run out, and asks each answer for no more than is left', async () => {
    const run = await session([], { then: { call: [{ name: 'list_directory', arguments: {} }], usage: { prompt_tokens: 80, completion_tokens: 20 } }, budget: { max_tokens: 250 } });
    expect(terminal(run)).toMatchObject({ type: 'completed', data: { reason: 'budget', turns_used: 3, tokens_used: 300 } });
    expect(model.requests(run.name).map((r) => r.body.max_tokens)).toEqual([250, 150, 50]);
    expect(run.events.filter((e) => e.type === 'usage').map((e) => e.data.tokens_used)).toEqual([100, 200, 300]);
  });

  it('ends with timeout when the session runs out of time mid-command, and leaves no process', async () => {
    const run = await session([{ call: [{ name: 'run_command', arguments: { command: 'sleep 60 & sleep 60; echo never' } }] }], { budget: { timeout_ms: 1500 } });
    expect(terminal(run)).toMatchObject({ type: 'completed', data: { reason: 'timeout' } });
    expect(run.events.find((e) => e.type === 'tool_result')!.data).toMatchObject({ ok: false, error: 'stopped' });
    expect(run.host.running.size).toBe(0);
  });

  it('is cancelled mid-command, and the command and its children are gone', async () => {
    const marker = `cancel-${Date.now()}`;
    const run = await session([{ call: [{ name: 'run_command', arguments: { command: `(sleep 300; echo ${marker}) & sleep 300` } }] }], {
      during: async (r, stop) => {
        while (r.host.running.size === 0) await new Promise((res) => setTimeout(res, 20));
        stop.abort(new LoopStop('cancelled', 'cancelled by the user'));
      },
    });
    expect(terminal(run)).toMatchObject({ type: 'cancelled', data: { reason: 'cancelled' } });
    expect(run.host.running.size).toBe(0);
    expect(processesMatching(`echo ${marker}`)).toEqual([]);
    expect(run.state.status).toBe('cancelled');
  });

  it('is cancelled while waiting for the model, without waiting for it', async () => {
    const run = await session([{ hang: true }], {
      during: async (_r, stop) => {
        while (model.open === 0) await new Promise((res) => setTimeout(res, 20));
        stop.abort(new LoopStop('cancelled', 'cancelled'));
      },
    });
    expect(terminal(run)).toMatchObject({ type: 'cancelled', data: { reason: 'cancelled', turns_used: 0 } });
  });

  it('fails with model_error when the provider refuses, saying what it said, with the key masked', async () => {
    const run = await session([{ status: 400, error: 'context too long for sk-test-key' }]);
    const end = terminal(run);
    expect(end).toMatchObject({ type: 'failed', data: { reason: 'model_error' } });
    expect(end.data.error).toMatch(/HTTP 400: context too long for \*\*\*/);
    expect(model.requests(run.name)).toHaveLength(1);
  });

  it('retries a provider that is briefly unavailable', async () => {
    const run = await session([{ status: 503 }, { status: 429 }, { say: 'fine now' }]);
    expect(terminal(run).data).toMatchObject({ reason: 'done', summary: 'fine now' });
    expect(model.requests(run.name)).toHaveLength(3);
  });

  it('fails with model_error when the model does not answer in time', async () => {
    const run = await session([{ hang: true }], { modelTimeoutMs: 1000 });
    expect(terminal(run).data).toMatchObject({ reason: 'model_error', error: expect.stringMatching(/did not answer within 1 s/) });
  });

  it('gives bad tool calls back to the model as errors and carries on', async () => {
    const run = await session([
      { call: [{ name: 'run_command', arguments: {} }, { name: 'format_disk', arguments: {} }, { name: 'read_file', arguments: '{not json' }, { name: 'read_file', arguments: { path: 'no/such/file' } }] },
      { say: 'gave up' },
    ]);
    expect(terminal(run).data).toMatchObject({ reason: 'done', steps_used: 4 });
    const errors = run.events.filter((e) => e.type === 'tool_result').map((e) => e.data.error);
    expect(errors).toEqual([expect.stringMatching(/bad arguments for run_command: command/), expect.stringMatching(/no tool "format_disk"/), expect.stringMatching(/not valid JSON/), expect.stringMatching(/no\/such\/file/)]);
    expect(model.requests(run.name)[1].body.messages.filter((m) => m.role === 'tool')).toHaveLength(4);
  });

  it('masks secrets in every event', async () => {
    const secret = 'hunter2-very-secret';
    const run = await session([{ say: `I will print ${secret}`, call: [{ name: 'run_command', arguments: { command: `echo ${secret}` } }] }, { say: `printed ${secret}` }], { secrets: [secret] });
    const text = JSON.stringify(run.events);
    expect(text).not.toContain(secret);
    expect(text).toContain('echo ***');
    expect(terminal(run).data.summary).toBe('printed ***');
  });

  it('fails with host_lost when the host is gone', async () => {
    const host = new LocalHostTools(home);
    host.lost = true;
    const run = await session([{ call: [{ name: 'run_command', arguments: { command: 'true' } }] }], { host });
    expect(terminal(run)).toMatchObject({ type: 'failed', data: { reason: 'host_lost', error: 'the host is offline' } });
  });

  it('carries on from its saved state after its object is evicted mid-session, without repeating a model call', async () => {
    const name = `m${++n}`;
    const flag = path.join(home, `go-${name}`);
    model.script(name, [{ call: [{ name: 'run_command', arguments: { command: `test -f ${flag} || sleep 300` } }] }, { call: [{ name: 'run_command', arguments: { command: 'echo two' } }] }, { say: 'done' }], { key: 'sk-test-key' });
    // First life: cut off while its first command runs (as an eviction would cut it).
    const first = await session([], {
      name,
      state: newLoopState('count', undefined, BUDGET, [...TOOL_NAMES]),
      during: async (r, stop) => {
        while (r.host.running.size === 0) await new Promise((res) => setTimeout(res, 5));
        stop.abort(new LoopStop('cancelled', 'evicted'));
      },
    });
    writeFileSync(flag, '');
    const saved = first.snapshots.find((s) => s.turns_used === 1 && s.pending_tools.length === 1)!;
    expect(saved).toBeDefined();
    // Second life: from what was saved.
    const second = await session([], { name, state: structuredClone(saved) });
    expect(terminal(second).data).toMatchObject({ reason: 'done', turns_used: 3, steps_used: 2 });
    expect(model.requests(name)).toHaveLength(3);
    expect(second.events[0].type).toBe('tool_call');
  });
});
