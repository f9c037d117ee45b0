import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers, type Req } from './agent-peer.ts';
import { runningComputer, stoppedComputer, world } from './computer-fixtures.ts';

useAgentPeers();

interface ExecResponse {
  output: string;
  exit_code: number;
  timed_out: boolean;
  truncated: boolean;
  duration_ms: number;
}

describe('POST /computers/:id/exec', () => {
  it('sends exec.run with the command, timeout_s 30 by default, no stdin, and answers the agent result', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ data: { output: 'total 24\n', exit_code: 3, timed_out: false, truncated: false, duration_ms: 12 } }));
    const res = await expectJson<ExecResponse>(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls -la /workspace' } }), 200);
    expect(res).toEqual({ output: 'total 24\n', exit_code: 3, timed_out: false, truncated: false, duration_ms: 12 });
    const req = await peer.take('exec.run');
    expect(req.params.command).toBe('ls -la /workspace');
    expect(req.params.timeout_s).toBe(30);
    expect(req.params).not.toHaveProperty('stdin');
    expect(req.params.max_output_bytes).toBeGreaterThan(0);
  });

  it('passes a timeout through and clamps it to 300', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    for (const [asked, sent] of [[1, 1], [120, 120], [300, 300], [301, 300], [100_000, 300]]) {
      await expectJson(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'true', timeout: asked } }), 200);
      expect((await peer.take('exec.run')).params.timeout_s, `timeout ${asked}`).toBe(sent);
    }
  });

  it('is a 400 for a missing command and for a zero, negative, fractional or string timeout, and nothing reaches the agent', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const missing = await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: {} }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('command is required');
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: '' } }), 400, 'VALIDATION_FAILED');
    for (const timeout of [0, -5, 2.5, '30']) {
      const err = await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls', timeout } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message, `timeout ${JSON.stringify(timeout)}`).toMatch(/^timeout: /);
    }
    expect(peer.requests.filter((r) => r.type === 'exec.run')).toEqual([]);
  });

  it('is a 409 COMPUTER_NOT_RUNNING on a stopped computer', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls' } }), 409, 'COMPUTER_NOT_RUNNING');
    await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'print(1)' } }), 409, 'COMPUTER_NOT_RUNNING');
    expect(peer.requests.filter((r) => r.type === 'exec.run')).toEqual([]);
  });

  it('is a 502 AGENT_UNAVAILABLE on a running computer whose agent is gone', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls' } }), 502, 'AGENT_UNAVAILABLE');
  });

  it('is a 409 COMPUTER_NOT_RUNNING when the agent says the computer is not running', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ error: { code: 'NOT_RUNNING', message: 'the computer is not running' } }));
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls' } }), 409, 'COMPUTER_NOT_RUNNING');
  });

  it('appends the truncation marker to output the agent cut', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ data: { output: 'yyyy', exit_code: 0, timed_out: false, truncated: true, duration_ms: 5 } }));
    const res = await expectJson<ExecResponse>(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'yes' } }), 200);
    expect(res.truncated).toBe(true);
    expect(res.output.startsWith('yyyy')).toBe(true);
    expect(res.output.slice(4)).toMatch(/^\n\[output truncated: only the first \d+ bytes are kept\]\n$/);
  });

  it('reports a timeout as the agent saw it', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ data: { output: 'partial', exit_code: 124, timed_out: true, truncated: false, duration_ms: 1000 } }));
    const res = await expectJson<ExecResponse>(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'sleep 9', timeout: 1 } }), 200);
    expect(res).toMatchObject({ output: 'partial', exit_code: 124, timed_out: true });
  });

  it('an agent error or a malformed result is a 502, not a made-up result', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ error: { code: 'FAILED', message: 'spawn failed' } }));
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls' } }), 502, 'AGENT_ERROR');
    peer.onRequest('exec.run', (req: Req<'exec.run'>) => {
      peer.send({ type: 'result', id: req.id, ok: true, data: { output: 'no exit code' } });
      return 'no-reply';
    });
    await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'ls' } }), 502, 'AGENT_ERROR');
  });
});

describe('POST /computers/:id/exec/python', () => {
  it('sends the code on stdin with a python3 runner command, and answers {output, exit_code}', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('exec.run', () => ({ data: { output: '42\n', exit_code: 0, timed_out: false, truncated: false, duration_ms: 30 } }));
    const code = 'import sys\nprint(f"Python {sys.version}")\nprint(2 + 2)';
    const res = await expectJson<ExecResponse>(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code, timeout: 10 } }), 200);
    expect(res).toMatchObject({ output: '42\n', exit_code: 0 });
    const req = await peer.take('exec.run');
    expect(req.params.stdin).toBe(code);
    expect(req.params.timeout_s).toBe(10);
    expect(req.params.command).toMatch(/python3/);
    expect(req.params.command).toMatch(/\/tmp\/miosa_exec_/);
    // The code itself never travels in the command line.
    expect(req.params.command).not.toContain('print(2 + 2)');
  });

  it('defaults to 30 s, clamps to 300, and refuses missing code or a bad timeout', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass' } }), 200);
    expect((await peer.take('exec.run')).params.timeout_s).toBe(30);
    await expectJson(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass', timeout: 999 } }), 200);
    expect((await peer.take('exec.run')).params.timeout_s).toBe(300);
    const missing = await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: {} }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('code is required');
    await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'pass', timeout: 0 } }), 400, 'VALIDATION_FAILED');
  });
});
