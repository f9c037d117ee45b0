/**
 * Sync exec (spec/03-exec.txt) against a scripted agent: the command runs as
 * a process (proc.start, output frames, proc.exit), so its answer is the
 * page's {output, exit_code} plus stdout and stderr apart; and a command
 * running when the agent's socket drops is re-attached by the next agent and
 * answered with its real result, never run twice for a retry with its key.
 */
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers, type ComputerPeer, type Req } from './agent-peer.ts';
import { computerStub, runningComputer, stoppedComputer, world, type World } from './computer-fixtures.ts';
import { EXEC_MAX_OUTPUT_BYTES } from '../../schema/api.ts';
import { RESULT_GRACE_MS } from '../../durable-objects/exec/sync-exec.ts';

useAgentPeers();

interface ExecResponse {
  output: string;
  exit_code: number;
  stdout: string;
  stderr: string;
  timed_out: boolean;
  truncated: boolean;
  duration_ms: number;
}

interface Script {
  /** Output in the order the computer produced it. */
  out?: ['stdout' | 'stderr', string][];
  exit_code?: number;
  timed_out?: boolean;
  /** Wait for stdin to be closed first (exec/python feeds the code on stdin). */
  readsStdin?: boolean;
}

/** Answers every proc.start as a computer running the command would: its output, then its exit. */
function computerRuns(peer: ComputerPeer, script: (start: Req<'proc.start'>) => Script = () => ({})): void {
  peer.onRequest('proc.start', (start) => {
    const s = script(start);
    const id = start.params.proc_id;
    void (async () => {
      if (s.readsStdin) await peer.take('proc.close_stdin');
      for (const [stream, text] of s.out ?? []) peer.output(id, stream, text);
      peer.exit(id, s.exit_code ?? 0, { timed_out: s.timed_out ?? false });
    })();
    return { data: { pid: 4242 } };
  });
}

const exec = (w: World, id: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  w.api(`/${id}/exec`, { method: 'POST', body, headers });

describe('POST /computers/:id/exec', () => {
  it('runs bash -c <command> as a process, 30 s by default, stdin at EOF, and answers output, exit_code and stdout/stderr apart', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer, () => ({ out: [['stdout', 'total 24\n'], ['stderr', 'ls: warning\n'], ['stdout', 'done\n']], exit_code: 3 }));
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'ls -la /workspace' }), 200);
    expect(res).toEqual({
      output: 'total 24\nls: warning\ndone\n',
      exit_code: 3,
      stdout: 'total 24\ndone\n',
      stderr: 'ls: warning\n',
      timed_out: false,
      truncated: false,
      duration_ms: expect.any(Number),
    });
    const start = await peer.take('proc.start');
    expect(start.params).toEqual({
      proc_id: start.params.proc_id,
      argv: ['/bin/bash', '-c', 'ls -la /workspace'],
      timeout_s: 30,
      stdin: false,
      output_limit: EXEC_MAX_OUTPUT_BYTES,
      wait_exit_ms: 2000,
    });
    // Answered, it leaves nothing behind in the object, in memory or stored.
    const left = await runInDurableObject(computerStub(computer.id), (obj) => ({
      row: obj.streams.procs.row(start.params.proc_id),
      running: obj.streams.procs.running().length,
    }));
    expect(left).toEqual({ row: null, running: 0 });
  });

  it("a short command's end may come with the start's answer (protocol 1.3), after its output", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', (start) => {
      peer.output(start.params.proc_id, 'stdout', 'fast\n');
      return { data: { pid: 9, exit: { exit_code: 0, signal: null, timed_out: false, duration_ms: 0 } } };
    });
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'echo fast' }), 200);
    expect(res).toMatchObject({ output: 'fast\n', stdout: 'fast\n', exit_code: 0 });
  });

  it("a short command's output may come in the start's answer too (base64 chunks in order)", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const b64 = (s: string) => btoa(s);
    peer.onRequest('proc.start', () => ({
      data: {
        pid: 9,
        exit: { exit_code: 2, signal: null, timed_out: false, duration_ms: 0 },
        output: [
          { stream: 'stdout', offset: 0, data: b64('one\n') },
          { stream: 'stderr', offset: 0, data: b64('warn\n') },
          { stream: 'stdout', offset: 4, data: b64('two\n') },
        ],
      },
    }));
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'x' }), 200);
    expect(res).toMatchObject({ output: 'one\nwarn\ntwo\n', stdout: 'one\ntwo\n', stderr: 'warn\n', exit_code: 2 });
  });

  it('passes a timeout through and clamps it to 300', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer);
    for (const [asked, sent] of [[1, 1], [120, 120], [300, 300], [301, 300], [100_000, 300]]) {
      await expectJson(await exec(w, computer.id, { command: 'true', timeout: asked }), 200);
      expect((await peer.take('proc.start')).params.timeout_s, `timeout ${asked}`).toBe(sent);
    }
  });

  it('is a 400 for a missing command and for a zero, negative, fractional or string timeout, and nothing reaches the agent', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const missing = await expectError(await exec(w, computer.id, {}), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('command is required');
    await expectError(await exec(w, computer.id, { command: '' }), 400, 'VALIDATION_FAILED');
    for (const timeout of [0, -5, 2.5, '30']) {
      const err = await expectError(await exec(w, computer.id, { command: 'ls', timeout }), 400, 'VALIDATION_FAILED');
      expect(err.error.message, `timeout ${JSON.stringify(timeout)}`).toMatch(/^timeout: /);
    }
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
  });

  it('is a 409 COMPUTER_NOT_RUNNING on a stopped computer', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await expectError(await exec(w, computer.id, { command: 'ls' }), 409, 'COMPUTER_NOT_RUNNING');
    await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'print(1)' } }), 409, 'COMPUTER_NOT_RUNNING');
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
  });

  it('is a 502 AGENT_UNAVAILABLE on a running computer whose agent is gone: the command never started', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await expectError(await exec(w, computer.id, { command: 'ls' }), 502, 'AGENT_UNAVAILABLE');
  });

  it('is a 409 COMPUTER_NOT_RUNNING when the agent says the computer is not running', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', () => ({ error: { code: 'NOT_RUNNING', message: 'the computer is not running' } }));
    await expectError(await exec(w, computer.id, { command: 'ls' }), 409, 'COMPUTER_NOT_RUNNING');
  });

  it(`keeps ${EXEC_MAX_OUTPUT_BYTES} bytes of each part, says truncated and marks the end of output`, async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const y = 'y\n'.repeat(EXEC_MAX_OUTPUT_BYTES / 4);
    computerRuns(peer, () => ({ out: [['stdout', y], ['stderr', 'oops\n'], ['stdout', y], ['stdout', y]] }));
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'yes | head -c 3M' }), 200);
    expect(res.truncated).toBe(true);
    expect(res.output.slice(0, EXEC_MAX_OUTPUT_BYTES)).toBe(`${y}oops\n${y}`.slice(0, EXEC_MAX_OUTPUT_BYTES));
    expect(res.output.slice(EXEC_MAX_OUTPUT_BYTES)).toMatch(/^\n\[output truncated: only the first \d+ bytes are kept\]\n$/);
    expect(res.stdout).toHaveLength(EXEC_MAX_OUTPUT_BYTES);
    expect(res.stderr).toBe('oops\n');
  });

  it('says truncated when the computer dropped output past the limit itself', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', (start) => {
      setTimeout(() => {
        peer.output(start.params.proc_id, 'stdout', 'kept');
        peer.exit(start.params.proc_id, 0, { truncated: true });
      }, 0);
      return { data: { pid: 1 } };
    });
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'yes' }), 200);
    expect(res).toMatchObject({ truncated: true, stdout: 'kept' });
    expect(res.output).toMatch(/^kept\n\[output truncated/);
  });

  it('reports a timeout as the computer saw it', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer, () => ({ out: [['stdout', 'partial']], exit_code: 124, timed_out: true }));
    const res = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'sleep 9', timeout: 1 }), 200);
    expect(res).toMatchObject({ output: 'partial', exit_code: 124, timed_out: true });
  });

  it('an agent error is a 502, not a made-up result; a computer that stops meanwhile is a 409', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', () => ({ error: { code: 'FAILED', message: 'spawn failed' } }));
    await expectError(await exec(w, computer.id, { command: 'ls' }), 400, 'BAD_REQUEST');
    await peer.take('proc.start');
    peer.onRequest('proc.start', () => ({ data: { pid: 1 } }));
    const pending = exec(w, computer.id, { command: 'sleep 100' });
    await peer.take('proc.start');
    peer.send({ type: 'computer.exited', reason: 'killed' });
    const err = await expectError(await pending, 409, 'COMPUTER_NOT_RUNNING');
    expect(err.error.message).toMatch(/stopped/);
  });
});

describe('sync exec across an agent redial', () => {
  it('a command running when the socket drops is re-attached by the next agent from the stored offsets, and answered with its whole output once', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', () => ({ data: { pid: 7 } }));
    const answer = exec(w, computer.id, { command: 'make build' });
    const id = (await peer.take('proc.start')).params.proc_id;
    peer.output(id, 'stdout', 'compiling a\n');
    peer.output(id, 'stderr', 'warning: b\n');
    // Wait for the object to take what was sent (a sync command's output is acknowledged only when it needs room), then the socket drops.
    await vi.waitFor(
      async () => {
        const offsets = await runInDurableObject(computerStub(computer.id), (obj) => obj.streams.procs.row(id)?.offsets);
        if (offsets?.stdout !== 12 || offsets?.stderr !== 11) throw new Error(`offsets ${JSON.stringify(offsets)}`);
      },
      { timeout: 4000, interval: 10 },
    );
    await peer.drop();

    const again = await w.host.dial(computer.id);
    again.onRequest('proc.attach', () => ({ data: { running: true, exit: null } }));
    await again.attach('running');
    const attach = await again.take('proc.attach');
    expect(attach).toMatchObject({ proc_id: id, offsets: { stdout: 12, stderr: 11 } });
    // The new agent sends from those offsets (a repeat of what the object has is dropped by it).
    again.output(id, 'stdout', 'compiling a\n', 0);
    again.output(id, 'stdout', 'linking\n', 12);
    again.exit(id, 0);
    const res = await expectJson<ExecResponse>(await answer, 200);
    expect(res).toMatchObject({ output: 'compiling a\nwarning: b\nlinking\n', stdout: 'compiling a\nlinking\n', stderr: 'warning: b\n', exit_code: 0 });
    expect([...peer.requests, ...again.requests].filter((r) => r.type === 'proc.start')).toHaveLength(1);
  });

  it(
    'a command whose agent stays away past its time is a 504 RESULT_PENDING; the retry with the same key gets the real result and runs nothing again',
    async () => {
      const w = await world();
      const { computer, peer } = await runningComputer(w);
      peer.onRequest('proc.start', () => ({ data: { pid: 7 } }));
      const key = crypto.randomUUID();
      const first = exec(w, computer.id, { command: 'echo once >> /tmp/ran', timeout: 1 }, { 'idempotency-key': key });
      const id = (await peer.take('proc.start')).params.proc_id;
      await peer.drop();
      const pending = await expectError(await first, 504, 'RESULT_PENDING');
      expect(pending.error.message).toMatch(/same Idempotency-Key/);

      // The agent comes back: the command had finished meanwhile.
      const again = await w.host.dial(computer.id);
      again.onRequest('proc.attach', () => ({ data: { running: true, exit: null } }));
      await again.attach('running');
      await again.take('proc.attach');
      again.output(id, 'stdout', 'once\n', 0);
      again.exit(id, 0);
      const retry = await expectJson<ExecResponse>(await exec(w, computer.id, { command: 'echo once >> /tmp/ran', timeout: 1 }, { 'idempotency-key': key }), 200);
      expect(retry).toMatchObject({ output: 'once\n', exit_code: 0 });
      expect(again.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
      // And the key now replays that answer.
      const replay = await exec(w, computer.id, { command: 'echo once >> /tmp/ran', timeout: 1 }, { 'idempotency-key': key });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await expectJson<ExecResponse>(replay, 200)).toMatchObject({ output: 'once\n' });
    },
    RESULT_GRACE_MS + 30_000,
  );

  it('a start the agent took but never answered, and that the next agent does not know, never started: 502, safe to retry', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', () => 'no-reply');
    const answer = exec(w, computer.id, { command: 'date' });
    await peer.take('proc.start');
    await peer.drop();
    const again = await w.host.dial(computer.id);
    again.onRequest('proc.attach', () => ({ error: { code: 'NOT_FOUND', message: 'no such process' } }));
    await again.attach('running');
    const err = await expectError(await answer, 502, 'AGENT_UNAVAILABLE');
    expect(err.error.message).toMatch(/did not start/);
  });
});

describe('POST /computers/:id/exec/python', () => {
  it('feeds the code on stdin to a python3 runner, then closes it, and answers {output, exit_code}', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer, () => ({ readsStdin: true, out: [['stdout', '42\n']] }));
    const code = 'import sys\nprint(f"Python {sys.version}")\nprint(2 + 2)';
    const res = await expectJson<ExecResponse>(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code, timeout: 10 } }), 200);
    expect(res).toMatchObject({ output: '42\n', exit_code: 0, stdout: '42\n', stderr: '' });
    const start = await peer.take('proc.start');
    expect(new TextDecoder().decode(peer.stdinOf(start.params.proc_id))).toBe(code);
    expect(start.params).toMatchObject({ timeout_s: 10, stdin: true });
    const script = start.params.argv!.join(' ');
    expect(script).toMatch(/python3/);
    expect(script).toMatch(/\/tmp\/miosa_exec_/);
    // The code itself never travels in the command line.
    expect(script).not.toContain('print(2 + 2)');
  });

  it('a megabyte of code reaches the computer in frames the agent link takes, byte for byte', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer, () => ({ readsStdin: true }));
    // As large as a request body may carry (1 MiB of JSON), a fifth of it two-byte characters.
    const code = `x = ${JSON.stringify('é'.repeat(100_000))}\n#`.padEnd(900_000, '#');
    await expectJson(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code } }), 200);
    const id = (await peer.take('proc.start')).params.proc_id;
    expect(new TextDecoder().decode(peer.stdinOf(id))).toBe(code);
    expect(Math.max(...peer.stdinFrames.filter((f) => f.proc_id === id).map((f) => f.bytes))).toBeLessThanOrEqual(64 * 1024);
  });

  it('defaults to 30 s, clamps to 300, and refuses missing code or a bad timeout', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    computerRuns(peer, () => ({ readsStdin: true }));
    await expectJson(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass' } }), 200);
    expect((await peer.take('proc.start')).params.timeout_s).toBe(30);
    await expectJson(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass', timeout: 999 } }), 200);
    expect((await peer.take('proc.start')).params.timeout_s).toBe(300);
    const missing = await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: {} }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('code is required');
    await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass', timeout: 0 } }), 400, 'VALIDATION_FAILED');
  });
});
