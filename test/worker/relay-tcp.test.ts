/**
 * A raw TCP connection to a computer's port over a WebSocket, inside workerd:
 * the real Worker and ComputerObject, the relay stream on the computer
 * socket of a scripted agent that plays the target.
 */
import { describe, expect, it } from 'vitest';
import { runInDurableObject } from 'cloudflare:test';
import { createTenant, expectError, expectJson } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub, runningComputer, stoppedComputer, world } from './computer-fixtures.ts';
import { connect, equalBytes, join, randomBytes, upgrade } from './ws-client.ts';
import { DEFAULT_WINDOW } from '../../durable-objects/relay/relay-mux.ts';
import { PROTOCOL } from '../../schema/protocol.ts';

useAgentPeers();

const tcpPath = (id: string, port: number | string) => `/api/v1/computers/${id}/tcp/${port}`;

async function opened(w: Awaited<ReturnType<typeof world>>) {
  const { computer, peer } = await runningComputer(w);
  const auth = { authorization: `Bearer ${w.tenant.apiKey}` };
  const pending = connect(tcpPath(computer.id, 8080), auth);
  const s = await peer.relay.nextOpen();
  expect(s.open.target).toEqual({ kind: 'computer_tcp', port: 8080 });
  expect(s.open.http).toBeUndefined();
  peer.relay.accept(s);
  const client = await pending;
  return { computer, peer, s, client };
}

describe('raw TCP to a computer port over a WebSocket', () => {
  it('carries bytes both ways unchanged, and closing each side is a FIN', async () => {
    const w = await world();
    const { peer, s, client } = await opened(w);
    const up = randomBytes(300_000, 7);
    client.send(up.subarray(0, 100_000));
    client.send(up.subarray(100_000));
    // 300 000 bytes do not fit the peer's window of 256 KiB: the rest comes after its credit.
    await peer.relay.until(() => s.received === s.window, 'a window of client bytes');
    peer.relay.credit(s);
    await peer.relay.until(() => s.received === up.byteLength, 'all client bytes');
    expect(equalBytes(peer.relay.bytesOf(s), up)).toBe(true);
    const down = randomBytes(200_000, 9);
    peer.relay.data(s, down.subarray(0, 150_000));
    peer.relay.data(s, down.subarray(150_000));
    await client.until(() => client.bytes().byteLength === down.byteLength);
    expect(equalBytes(client.bytes(), down)).toBe(true);
    // The target closes its side: the client's socket closes; the client's close is the other FIN.
    peer.relay.close(s);
    expect((await client.waitClosed()).code).toBe(1000);
    await peer.relay.until(() => s.closed, 'the FIN from the object');
    expect(s.reset).toBeNull();
  });

  it('the client closing first sends the FIN and the target can still finish', async () => {
    const w = await world();
    const { peer, s, client } = await opened(w);
    client.send(new TextEncoder().encode('bye'));
    client.close(1000, 'done');
    await peer.relay.until(() => s.closed, 'the FIN');
    expect(new TextDecoder().decode(peer.relay.bytesOf(s))).toBe('bye');
    peer.relay.close(s);
    await peer.relay.until(() => s.closed && !s.reset, 'a clean end');
  });

  it('sends the agent no more than its window, and the rest once it credits', async () => {
    const w = await world();
    const { peer, s, client } = await opened(w);
    const big = randomBytes(700_000, 3);
    for (let at = 0; at < big.byteLength; at += 50_000) client.send(big.subarray(at, at + 50_000));
    await peer.relay.until(() => s.received === s.window, 'a full window');
    await sleep(100);
    expect(s.received).toBe(s.window);
    while (s.received < big.byteLength) {
      peer.relay.credit(s);
      const before = s.received;
      await peer.relay.until(() => s.received > before || s.received === big.byteLength, 'more bytes after a credit');
    }
    expect(equalBytes(peer.relay.bytesOf(s), big)).toBe(true);
  });

  it('credits what it passed to the client, a quarter window at a time, and resets an agent that sends out of order', async () => {
    const w = await world();
    const { peer, s, client } = await opened(w);
    const quarter = DEFAULT_WINDOW / 4;
    peer.relay.data(s, randomBytes(quarter - 1));
    await client.until(() => client.bytes().byteLength === quarter - 1);
    expect(s.credits).toEqual([]);
    peer.relay.data(s, randomBytes(1));
    await peer.relay.until(() => s.credits.includes(quarter), 'a credit for the first quarter window');
    // Bytes at the wrong offset: the object resets the stream and closes the client.
    s.sent += 10;
    peer.relay.data(s, randomBytes(5));
    await peer.relay.until(() => s.reset, 'a reset');
    expect(s.reset?.code).toBe('protocol');
    expect((await client.waitClosed()).code).toBe(1011);
  });

  it('the target resetting the connection closes the client with 1011', async () => {
    const w = await world();
    const { peer, s, client } = await opened(w);
    peer.relay.reset(s, 'reset', 'connection reset by peer');
    const closed = await client.waitClosed();
    expect(closed.code).toBe(1011);
    expect(closed.reason).toContain('connection reset by peer');
  });

  it('the agent going away closes every relayed socket', async () => {
    const w = await world();
    const { peer, client } = await opened(w);
    await peer.drop();
    expect((await client.waitClosed()).code).toBe(1011);
  });

  it('a port nobody listens on is a 502 PORT_NOT_LISTENING naming the port and computer', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const pending = upgrade(tcpPath(computer.id, 9), { authorization: `Bearer ${w.tenant.apiKey}` });
    peer.relay.reset(await peer.relay.nextOpen(), 'refused', 'ECONNREFUSED');
    const err = await expectError(await pending, 502, 'PORT_NOT_LISTENING');
    expect(err.error.message).toContain('port 9 of computer dev box');
  });

  it('answers an unknown stream once with a reset, not once per frame', async () => {
    const w = await world();
    const { peer, s } = await opened(w);
    peer.relay.reset(s, 'closed');
    await sleep(20);
    const stray = { ...s, open: { ...s.open, stream_id: 'zzzz1' }, sent: 0 };
    peer.relay.data(stray, 'a');
    peer.relay.data(stray, 'b');
    await peer.relay.until(() => peer.relay.strayResets.length > 0, 'a reset for the stray stream');
    await sleep(50);
    expect(peer.relay.strayResets).toEqual([{ stream_id: 'zzzz1', code: 'closed' }]);
  });

  it('opens with a stream token from a browser, and refuses without credentials', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const { token } = await expectJson<{ token: string }>(await w.api(`/${computer.id}/stream-token`, { method: 'POST' }), 200);
    const pending = connect(`${tcpPath(computer.id, 5900)}?auth=${encodeURIComponent(token)}`);
    const s = await peer.relay.nextOpen();
    peer.relay.accept(s);
    const client = await pending;
    expect(s.open.target).toEqual({ kind: 'computer_tcp', port: 5900 });
    client.close();
    await expectError(await upgrade(tcpPath(computer.id, 5900)), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(`${tcpPath(computer.id, 5900)}?auth=nope`), 401, 'UNAUTHORIZED');
  });

  it("another tenant's key gets 404 and nothing is opened; bad ports are 400; a stopped computer is 409", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const intruder = await createTenant({ name: 'Intruder' });
    const err = await expectError(await upgrade(tcpPath(computer.id, 8080), { authorization: `Bearer ${intruder.apiKey}` }), 404, 'NOT_FOUND');
    expect(err.error.message).toBe('computer not found');
    for (const bad of ['0', '65536', '0x1F90', '080', '-1', 'ssh']) {
      await expectError(await upgrade(tcpPath(computer.id, bad), { authorization: `Bearer ${w.tenant.apiKey}` }), 400, 'VALIDATION_FAILED');
    }
    await expectError(await upgrade(tcpPath('not-a-uuid', 8080), { authorization: `Bearer ${w.tenant.apiKey}` }), 400, 'INVALID_ID');
    await expectError(await w.api(`/${computer.id}/tcp/8080`), 400, 'BAD_REQUEST');
    expect(peer.relay.streams.size).toBe(0);
    const stopped = await stoppedComputer(w);
    await expectError(await upgrade(tcpPath(stopped.computer.id, 8080), { authorization: `Bearer ${w.tenant.apiKey}` }), 409, 'COMPUTER_NOT_RUNNING');
  });

  it('an agent that speaks an older protocol is not asked to relay', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.attach('running', { protocol: { major: PROTOCOL.major, minor: 2 } });
    const err = await expectError(await upgrade(tcpPath(computer.id, 8080), { authorization: `Bearer ${w.tenant.apiKey}` }), 502, 'AGENT_UNAVAILABLE');
    expect(err.error.message).toContain('update the agent');
    expect(peer.relay.streams.size).toBe(0);
  });

  it('stopping the computer ends its relayed connections', async () => {
    const w = await world();
    const { computer, client } = await opened(w);
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    expect((await client.waitClosed()).code).toBe(1011);
    expect(await runInDurableObject(computerStub(computer.id), (obj) => obj.relay.size)).toBe(0);
  });
});

void join;
