import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson } from './helpers.ts';
import { sleep, useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, stoppedComputer, world, type World } from './computer-fixtures.ts';
import { ClientSocket, connect, equalBytes, join, randomBytes, upgrade } from './ws-client.ts';
import { STDIN_QUEUE_BYTES, STDIN_WINDOW_BYTES } from '../../durable-objects/exec/stdin-pump.ts';

useAgentPeers();

const PROTOCOL = 'miosa-exec-v1';

const execPath = (id: string, query: Record<string, string | string[]>) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const x of [v].flat()) q.append(k, x);
  return `/api/v1/computers/${id}/exec/stream?${q}`;
};

/** Opens an exec socket as the SDK does in Node: subprotocol offered, key in the Authorization header. */
async function openExec(w: World, id: string, query: Record<string, string | string[]>): Promise<ClientSocket> {
  return connect(execPath(id, query), { authorization: `Bearer ${w.tenant.apiKey}` }, [PROTOCOL]);
}

/** A running computer with an exec socket open on it, and the proc.start the agent got. */
async function execSession(query: Record<string, string | string[]> = { command: 'cat' }) {
  const w = await world();
  const { computer, peer } = await runningComputer(w);
  const client = await openExec(w, computer.id, query);
  const start = await peer.take('proc.start');
  return { w, computer, peer, client, start, procId: start.params.proc_id };
}

const stdinFrame = (payload: Uint8Array) => join([Uint8Array.of(0x00), payload]);

describe('exec over WebSocket (miosa-exec-v1)', () => {
  it('selects the miosa-exec-v1 subprotocol and passes argv, env, cwd and the terminal size to proc.start', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const client = await openExec(w, computer.id, {
      command: 'python3',
      args: ['-u', 'script with spaces.py'],
      env: ['A=1', 'B=x=y', 'EMPTY='],
      cwd: '/tmp/work',
      tty: 'true',
      rows: '40',
      cols: '120',
    });
    expect(client.res.status).toBe(101);
    expect(client.protocol).toBe(PROTOCOL);
    const start = await peer.take('proc.start');
    expect(start.params).toEqual({
      proc_id: start.params.proc_id,
      argv: ['python3', '-u', 'script with spaces.py'],
      env: { A: '1', B: 'x=y', EMPTY: '' },
      cwd: '/tmp/work',
      tty: { rows: 40, cols: 120 },
      stdin: true,
    });
  });

  it('runs a command without args through the shell, with pipes and no terminal', async () => {
    const { start, client } = await execSession({ command: 'echo hi | wc -c' });
    expect(client.protocol).toBe(PROTOCOL);
    expect(start.params).toEqual({ proc_id: start.params.proc_id, command: 'echo hi | wc -c', shell: '/bin/bash', stdin: true });
  });

  it('sends stdout as 0x01, stderr as 0x02, in order, then the exit code as 0x03 + u32 and closes 1000', async () => {
    const { peer, client, procId } = await execSession();
    peer.output(procId, 'stdout', 'out 1\n');
    peer.output(procId, 'stderr', 'err 1\n');
    peer.output(procId, 'stdout', 'out 2\n');
    peer.exit(procId, 258);
    const closed = await client.waitClosed();
    expect(closed.code).toBe(1000);
    const frames = client.frames.map((f) => [f[0], new TextDecoder().decode(f.subarray(1))]);
    expect(frames.slice(0, 3)).toEqual([
      [1, 'out 1\n'],
      [2, 'err 1\n'],
      [1, 'out 2\n'],
    ]);
    const exit = client.frames[3];
    expect(exit.byteLength).toBe(5);
    expect(exit[0]).toBe(3);
    expect(new DataView(exit.buffer, exit.byteOffset).getUint32(1)).toBe(258);
    expect(client.frames).toHaveLength(4);
  });

  it('with tty, the terminal output arrives as stdout frames', async () => {
    const { peer, client, procId } = await execSession({ command: 'bash', tty: 'true' });
    peer.output(procId, 'pty', '\x1b[1mprompt$ \x1b[0m');
    await client.until(() => client.frames.length === 1);
    expect(client.frames[0][0]).toBe(1);
    expect(new TextDecoder().decode(client.frames[0].subarray(1))).toBe('\x1b[1mprompt$ \x1b[0m');
  });

  it('forwards stdin frames to the process byte-exact and in order', async () => {
    const { peer, client, procId } = await execSession();
    const parts = [new TextEncoder().encode('hello\n'), Uint8Array.of(0, 1, 2, 255, 254), randomBytes(70_000, 7)];
    for (const p of parts) client.send(stdinFrame(p));
    await client.until(() => peer.stdinOf(procId).byteLength === 70_011);
    expect(equalBytes(peer.stdinOf(procId), join(parts))).toBe(true);
  });

  it('a 1 MiB paste arrives byte-exact, with never more than the 1 MiB window unacknowledged at the agent', async () => {
    const { peer, client, procId } = await execSession();
    // The process does not read for now: the agent acknowledges nothing.
    peer.holdStdinAcks(true);
    const paste = randomBytes(1024 * 1024 + 300_000, 3);
    for (let at = 0; at < paste.byteLength; at += 100_000) client.send(stdinFrame(paste.subarray(at, at + 100_000)));
    await client.until(() => peer.stdinOf(procId).byteLength === STDIN_WINDOW_BYTES);
    await sleep(200);
    expect(peer.stdinOf(procId).byteLength).toBe(STDIN_WINDOW_BYTES);
    // It reads: the rest follows, in order, nothing lost or repeated.
    peer.holdStdinAcks(false);
    await client.until(() => peer.stdinOf(procId).byteLength === paste.byteLength);
    expect(equalBytes(peer.stdinOf(procId), paste)).toBe(true);
  });

  it('a 1 MiB paste sent as one frame arrives byte-exact', async () => {
    const { peer, client, procId } = await execSession();
    const paste = randomBytes(1024 * 1024, 11);
    client.send(stdinFrame(paste));
    await client.until(() => peer.stdinOf(procId).byteLength === paste.byteLength);
    expect(equalBytes(peer.stdinOf(procId), paste)).toBe(true);
    // Sent in frames that each fit well under the window.
    expect(Math.max(...peer.stdinFrames.map((f) => f.bytes))).toBeLessThanOrEqual(64 * 1024);
  });

  it('closes with 1009 when more stdin waits than the queue holds, and hangs up the process', async () => {
    const { peer, client } = await execSession();
    peer.holdStdinAcks(true);
    const chunk = stdinFrame(new Uint8Array(512 * 1024));
    const total = STDIN_WINDOW_BYTES + STDIN_QUEUE_BYTES + 1024 * 1024;
    for (let sent = 0; sent < total && !client.closedWith; sent += 512 * 1024) client.send(chunk);
    const closed = await client.waitClosed();
    expect(closed.code).toBe(1009);
    expect((await peer.take('proc.signal')).signal).toBe('HUP');
  });

  it('0x04 closes stdin after the queued bytes', async () => {
    const { peer, client, procId } = await execSession();
    client.send(stdinFrame(new TextEncoder().encode('last line\n')));
    client.send(Uint8Array.of(0x04));
    const req = await peer.take('proc.close_stdin');
    expect(req.proc_id).toBe(procId);
    expect(new TextDecoder().decode(peer.stdinOf(procId))).toBe('last line\n');
  });

  it('a resize frame (0x05, rows then cols as u16 BE) becomes proc.resize', async () => {
    const { peer, client, procId } = await execSession({ command: 'vim', tty: 'true' });
    const frame = new Uint8Array(5);
    frame[0] = 0x05;
    new DataView(frame.buffer).setUint16(1, 50);
    new DataView(frame.buffer).setUint16(3, 200);
    client.send(frame);
    const req = await peer.take('proc.resize');
    expect(req).toMatchObject({ proc_id: procId, rows: 50, cols: 200 });
  });

  it('ignores unknown frame types and keeps working', async () => {
    const { peer, client, procId } = await execSession();
    client.send(Uint8Array.of(0x09, 1, 2, 3));
    client.send(stdinFrame(new TextEncoder().encode('still here')));
    await client.until(() => peer.stdinOf(procId).byteLength === 10);
    expect(client.closedWith).toBeNull();
  });

  it('when the client closes first, the process gets HUP and then KILL', async () => {
    const { peer, client, procId } = await execSession();
    client.close(1000, 'client closed');
    const hup = await peer.take('proc.signal');
    expect(hup).toMatchObject({ proc_id: procId, signal: 'HUP' });
    const kill = await peer.take('proc.signal');
    expect(kill).toMatchObject({ proc_id: procId, signal: 'KILL' });
  });

  it('a process that exits on HUP is not killed', async () => {
    const { peer, client, procId } = await execSession();
    peer.onRequest('proc.signal', (req) => {
      if (req.signal === 'HUP') setTimeout(() => peer.exit(procId, 129, { signal: 1 }), 5);
      return { data: {} };
    });
    client.close();
    expect((await peer.take('proc.signal')).signal).toBe('HUP');
    await sleep(2500);
    expect(peer.requests.filter((r) => r.type === 'proc.signal').map((r) => (r as { signal: string }).signal)).toEqual(['HUP']);
  });

  it('output the agent sends before its proc.start answer still reaches the socket', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', (req) => {
      peer.output(req.params.proc_id, 'stdout', 'early bird\n');
      return { data: { pid: 7 } };
    });
    const client = await openExec(w, computer.id, { command: 'echo early bird' });
    await client.until(() => client.frames.length === 1);
    expect(new TextDecoder().decode(client.frames[0].subarray(1))).toBe('early bird\n');
  });

  it('stdin sent while the agent is away is delivered once it re-attaches', async () => {
    const { w, computer, peer, client, procId } = await execSession();
    await peer.drop();
    client.send(stdinFrame(new TextEncoder().encode('typed while away\n')));
    await sleep(50);
    const back = await w.host.computer(computer.id, { state: 'running' });
    expect((await back.take('proc.attach')).proc_id).toBe(procId);
    await client.until(() => new TextDecoder().decode(back.stdinOf(procId)) === 'typed while away\n', 3000);
    expect(client.closedWith).toBeNull();
  });

  it('stdin in flight when the agent drops goes again, from the last acknowledged byte, to the agent that comes back', async () => {
    const { w, computer, peer, client, procId } = await execSession();
    const paste = randomBytes(300_000, 11);
    client.send(stdinFrame(paste.subarray(0, 100_000)));
    await client.until(() => peer.stdinOf(procId).byteLength === 100_000);
    // The rest reaches this agent, which never says it wrote it.
    peer.holdStdinAcks(true);
    client.send(stdinFrame(paste.subarray(100_000)));
    await client.until(() => peer.stdinOf(procId).byteLength === paste.byteLength);
    await peer.drop();

    const back = await w.host.computer(computer.id, { state: 'running' });
    await back.take('proc.attach');
    await client.until(() => back.stdinStart(procId) + back.stdinOf(procId).byteLength === paste.byteLength, 3000);
    expect(back.stdinStart(procId)).toBe(100_000);
    expect(equalBytes(back.stdinOf(procId), paste.subarray(100_000))).toBe(true);
    // And what comes after goes on from there.
    client.send(stdinFrame(new TextEncoder().encode('more')));
    await client.until(() => back.stdinOf(procId).byteLength === 200_004, 3000);
    expect(back.stdinFrames.at(-1)).toMatchObject({ proc_id: procId, offset: 300_000, bytes: 4 });
  });

  it('a socket that closed while the agent was away has its process hung up when the agent re-attaches', async () => {
    const { w, computer, peer, client, procId } = await execSession();
    await peer.drop();
    client.close();
    await sleep(50);
    const back = await w.host.computer(computer.id, { state: 'running' });
    expect(await back.take('proc.signal')).toMatchObject({ proc_id: procId, signal: 'HUP' });
  });

  it('the computer stopping closes the socket with 1011 and says why', async () => {
    const { w, computer, client } = await execSession();
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    const closed = await client.waitClosed();
    expect(closed.code).toBe(1011);
    expect(closed.reason).toMatch(/stopped/);
  });
});

describe('exec socket: authentication and errors before the upgrade', () => {
  it('authenticates with a bearer.<key> subprotocol and still selects miosa-exec-v1', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const client = await connect(execPath(computer.id, { command: 'ls' }), {}, [PROTOCOL, `bearer.${w.tenant.apiKey}`]);
    expect(client.protocol).toBe(PROTOCOL);
    expect((await peer.take('proc.start')).params.command).toBe('ls');
  });

  it('a bad or missing key is a 401 envelope and nothing starts', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const bad = await upgrade(execPath(computer.id, { command: 'ls' }), {}, [PROTOCOL, 'bearer.msk_live_not_a_real_key_0000000000']);
    expect(bad.webSocket).toBeNull();
    await expectError(bad, 401, 'UNAUTHORIZED');
    await expectError(await upgrade(execPath(computer.id, { command: 'ls' }), { authorization: 'Bearer msk_live_nope' }, [PROTOCOL]), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(execPath(computer.id, { command: 'ls' }), {}, [PROTOCOL]), 401, 'UNAUTHORIZED');
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
  });

  it('another tenant gets 404 before any upgrade, and nothing starts', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const other = await createTenant();
    const res = await upgrade(execPath(computer.id, { command: 'ls' }), { authorization: `Bearer ${other.apiKey}` }, [PROTOCOL]);
    expect(res.webSocket).toBeNull();
    await expectError(res, 404, 'NOT_FOUND');
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
  });

  it('is a 400 without a command or with bad query values, and a 400 without the upgrade', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const auth = { authorization: `Bearer ${w.tenant.apiKey}` };
    const missing = await expectError(await upgrade(execPath(computer.id, {}), auth, [PROTOCOL]), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('command is required');
    await expectError(await upgrade(execPath(computer.id, { command: 'ls', env: 'NOEQUALS' }), auth, [PROTOCOL]), 400, 'VALIDATION_FAILED');
    await expectError(await upgrade(execPath(computer.id, { command: 'ls', rows: '0', tty: 'true' }), auth, [PROTOCOL]), 400, 'VALIDATION_FAILED');
    await expectError(await upgrade(execPath(computer.id, { command: 'ls', tty: 'maybe' }), auth, [PROTOCOL]), 400, 'VALIDATION_FAILED');
    const plain = await w.api(`/${computer.id}/exec/stream?command=ls`);
    await expectError(plain, 400, 'BAD_REQUEST');
  });

  it('is a 409 on a stopped computer and a 502 when its agent is away', async () => {
    const w = await world();
    const stopped = await stoppedComputer(w);
    const auth = { authorization: `Bearer ${w.tenant.apiKey}` };
    await expectError(await upgrade(execPath(stopped.computer.id, { command: 'ls' }), auth, [PROTOCOL]), 409, 'COMPUTER_NOT_RUNNING');
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await expectError(await upgrade(execPath(computer.id, { command: 'ls' }), auth, [PROTOCOL]), 502, 'AGENT_UNAVAILABLE');
  });

  it('a process the agent cannot start is a 400 before the upgrade', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('proc.start', () => ({ error: { code: 'FAILED', message: 'cwd /nope does not exist' } }));
    const res = await upgrade(execPath(computer.id, { command: 'ls', cwd: '/nope' }), { authorization: `Bearer ${w.tenant.apiKey}` }, [PROTOCOL]);
    expect(res.webSocket).toBeNull();
    const err = await expectError(res, 400, 'BAD_REQUEST');
    expect(err.error.message).toMatch(/cwd \/nope does not exist/);
  });
});

export type { ComputerPeer };
