/**
 * The events socket (miosa-events-v1) against a scripted agent: the query
 * becomes a watch in the computer, its events reach the client as
 * {type, data, payload, timestamp}, unknown and desktop producers get clear
 * frames (the socket stays), and the watch follows the socket, the agent and
 * the computer.
 */
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { runningComputer, stoppedComputer, world, type World } from './computer-fixtures.ts';
import { connect, upgrade, type ClientSocket } from './ws-client.ts';

useAgentPeers();

const PROTOCOL = 'miosa-events-v1';
const path = (id: string, q: string) => `/api/v1/computers/${id}/events?${q}`;
const open = (w: World, id: string, q: string) => connect(path(id, q), { authorization: `Bearer ${w.tenant.apiKey}` }, [PROTOCOL]);
const frames = (s: ClientSocket) => s.messages.map((m) => JSON.parse(m as string) as { type: string; data: Record<string, unknown>; payload: unknown; timestamp: string });

describe('the events socket', () => {
  it('starts a watch with what the query asks; the watch\'s events reach the client', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const s = await open(w, computer.id, 'subscribe=process,file,idle&paths=/workspace,/srv&idle_threshold_sec=90');
    expect(s.protocol).toBe(PROTOCOL);
    const start = await peer.take('watch.start');
    expect(start.producers).toEqual({ process: {}, file: { paths: ['/workspace', '/srv'] }, idle: { threshold_s: 90 } });
    peer.send({
      type: 'watch.events',
      watch_id: start.watch_id,
      events: [
        { type: 'file.created', data: { path: '/workspace/a', is_dir: false }, timestamp: '2026-05-17T10:00:00.123Z' },
        { type: 'process.started', data: { pid: 42, cmd: 'make' }, timestamp: '2026-05-17T10:00:00.200Z' },
      ],
    });
    await s.until(() => s.messages.length === 2);
    expect(frames(s)).toEqual([
      { type: 'file.created', data: { path: '/workspace/a', is_dir: false }, payload: { path: '/workspace/a', is_dir: false }, timestamp: '2026-05-17T10:00:00.123Z' },
      { type: 'process.started', data: { pid: 42, cmd: 'make' }, payload: { pid: 42, cmd: 'make' }, timestamp: '2026-05-17T10:00:00.200Z' },
    ]);
    s.close();
    expect((await peer.take('watch.stop')).watch_id).toBe(start.watch_id);
  });

  it('file without paths watches the home and /workspace; idle defaults to 30 s', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const s = await open(w, computer.id, 'subscribe=file,idle');
    expect((await peer.take('watch.start')).producers).toEqual({ file: { paths: ['/home/user', '/workspace'] }, idle: { threshold_s: 30 } });
    s.close();
  });

  it('unknown producers get an error frame; desktop ones producer.unavailable with the reason while the desktop does not answer; the socket stays open', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('watch.start', () => ({ data: { unavailable: [{ producer: 'file', reason: '/srv is not a directory; it is not watched' }] } }));
    // Nothing listens on the desktop daemon's port in this computer.
    peer.relay.onOpen = (st) => peer.relay.reset(st, 'refused', 'ECONNREFUSED');
    const s = await open(w, computer.id, 'subscribe=window,bogus,clipboard,file&paths=/srv');
    const start = await peer.take('watch.start');
    expect(start.producers).toEqual({ file: { paths: ['/srv'] } });
    await s.until(() => s.messages.length === 4, 15_000);
    const notUp = 'the desktop is not up yet; its events start when it is';
    expect(frames(s).map((f) => [f.type, f.data])).toEqual([
      ['error', { code: 'UNKNOWN_PRODUCER', message: 'unknown producer "bogus"; producers are process, file, idle, window, clipboard' }],
      ['producer.unavailable', { producer: 'file', reason: '/srv is not a directory; it is not watched' }],
      ['producer.unavailable', { producer: 'window', reason: notUp }],
      ['producer.unavailable', { producer: 'clipboard', reason: notUp }],
    ]);
    expect(s.closedWith).toBeNull();
    peer.send({ type: 'watch.events', watch_id: start.watch_id, events: [{ type: 'file.created', data: { path: '/srv/x' }, timestamp: 't' }] });
    await s.until(() => s.messages.length === 5);
    s.close();
  });

  it('stopping the computer closes the socket with 4001; a reconnected agent gets the watch again', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const s = await open(w, computer.id, 'subscribe=process');
    const first = await peer.take('watch.start');
    await peer.drop();
    const again = await w.host.computer(computer.id, { state: 'running' });
    const second = await again.take('watch.start');
    expect(second).toMatchObject({ watch_id: first.watch_id, producers: { process: {} } });
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    expect(await s.waitClosed()).toEqual({ code: 4001, reason: 'the computer is stopped' });
  });

  it('refuses before the upgrade: not running 409, bad query 400, another tenant 404, no credentials 401', async () => {
    const w = await world();
    const { computer } = await stoppedComputer(w);
    const auth = { authorization: `Bearer ${w.tenant.apiKey}` };
    await expectError(await upgrade(path(computer.id, 'subscribe=process'), auth, [PROTOCOL]), 409, 'COMPUTER_NOT_RUNNING');
    const { computer: running } = await runningComputer(w);
    for (const [q, field] of [
      ['', 'subscribe'],
      ['subscribe=', 'subscribe'],
      ['subscribe=file&paths=relative', 'paths'],
      ['subscribe=idle&idle_threshold_sec=0', 'idle_threshold_sec'],
      ['subscribe=idle&idle_threshold_sec=abc', 'idle_threshold_sec'],
    ]) {
      const err = await expectError(await upgrade(path(running.id, q), auth, [PROTOCOL]), 400, 'VALIDATION_FAILED');
      expect(err.error.message, q).toMatch(new RegExp(`^${field}`));
    }
    const other = await world();
    await expectError(await upgrade(path(running.id, 'subscribe=process'), { authorization: `Bearer ${other.tenant.apiKey}` }, [PROTOCOL]), 404, 'NOT_FOUND');
    await expectError(await upgrade(path(running.id, 'subscribe=process'), {}, [PROTOCOL]), 401, 'UNAUTHORIZED');
    // A browser's way: the key as a second subprotocol; only miosa-events-v1 is echoed.
    const s = await connect(path(running.id, 'subscribe=process'), {}, [PROTOCOL, `bearer.${w.tenant.apiKey}`]);
    expect(s.protocol).toBe(PROTOCOL);
    s.close();
  });

  it('an agent too old for watches is a 502 before the upgrade', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.attach('running', { protocol: { major: 1, minor: 2 } });
    const err = await expectError(await upgrade(path(computer.id, 'subscribe=file'), { authorization: `Bearer ${w.tenant.apiKey}` }, [PROTOCOL]), 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/too old/);
  });
});
