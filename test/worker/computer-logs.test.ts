/**
 * The system log against a scripted agent: what the agent ships is stored
 * once, in order, acknowledged, and served as the last lines and as a stream;
 * after a reconnect the agent is told where to continue.
 */
import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, expectError, expectJson } from './helpers.ts';
import { useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';
import { SseReader } from '../e2e/sse.ts';

useAgentPeers();

interface Logs {
  data: { computer_id: string; lines: string[]; entries: { id: number; line: string; timestamp: string }[]; last_id: number };
}

/** Ships text as the agent would: at `offset`, as many bytes as it holds. */
function ship(peer: ComputerPeer, offset: number, text: string, restart = false): number {
  const bytes = new TextEncoder().encode(text).byteLength;
  peer.send({ type: 'log.lines', offset, bytes, text, ...(restart && { restart: true }) });
  return offset + bytes;
}

async function untilAcked(peer: ComputerPeer, offset: number): Promise<void> {
  const deadline = Date.now() + 4000;
  while (!peer.logNotices.some((n) => n.type === 'log.ack' && n.offset === offset)) {
    if (Date.now() > deadline) throw new Error(`no log.ack ${offset}; got ${JSON.stringify(peer.logNotices)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the system log', () => {
  it('asks the agent to follow from 0, stores whole lines once and in order, and answers the last N', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    expect(peer.logNotices[0]).toEqual({ type: 'log.follow', offset: 0 });
    let at = ship(peer, 0, '--- boot 2026-05-17T10:00:00Z\nhangar-guest: listening\n');
    at = ship(peer, at, 'a partial li');
    at = ship(peer, at, 'ne, then done\n');
    await untilAcked(peer, at);
    const logs = await expectJson<Logs>(await w.api(`/${computer.id}/logs`), 200);
    expect(logs.data.lines).toEqual(['--- boot 2026-05-17T10:00:00Z', 'hangar-guest: listening', 'a partial line, then done']);
    expect(logs.data.entries.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(logs.data.entries[0].timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // The same bytes again (a resend after a reconnect) add nothing; an overlap adds only what is new.
    ship(peer, 0, '--- boot 2026-05-17T10:00:00Z\n');
    const head = new TextEncoder().encode('--- boot 2026-05-17T10:00:00Z\nhangar-guest: listening\n').byteLength;
    at = ship(peer, head, 'a partial line, then done\nmore\n');
    await untilAcked(peer, at);
    expect((await expectJson<Logs>(await w.api(`/${computer.id}/logs?lines=2`), 200)).data.lines).toEqual(['a partial line, then done', 'more']);
    expect((await expectJson<Logs>(await w.api(`/${computer.id}/logs`), 200)).data.entries).toHaveLength(4);
  });

  it('a gap and a restart of the host log are said in the log', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    let at = ship(peer, 0, 'one\n');
    at = ship(peer, at + 10, 'two\n');
    at = ship(peer, 0, 'fresh\n', true);
    await untilAcked(peer, at);
    expect((await expectJson<Logs>(await w.api(`/${computer.id}/logs`), 200)).data.lines).toEqual([
      'one',
      '[10 bytes of the log were lost on the way]',
      'two',
      '[the log on the host starts over here: the computer moved, or its log was cut]',
      'fresh',
    ]);
  });

  it('after a reconnect the agent is told to continue where the object stopped; a stopped computer still has its log', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const at = ship(peer, 0, 'before the drop\n');
    await untilAcked(peer, at);
    await peer.drop();
    const again = await w.host.computer(computer.id, { state: 'running' });
    expect(again.logNotices[0]).toEqual({ type: 'log.follow', offset: at });
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    expect((await expectJson<Logs>(await w.api(`/${computer.id}/logs`), 200)).data.lines).toEqual(['before the drop']);
  });

  it('streams the last lines, then live ones; Last-Event-ID resumes; another tenant gets 404', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    let at = ship(peer, 0, 'l1\nl2\nl3\n');
    await untilAcked(peer, at);
    const res = await w.api(`/${computer.id}/logs/stream?lines=2`);
    expect(res.status).toBe(200);
    const reader = new SseReader(res);
    const first = [await reader.next(), await reader.next()];
    expect(first.map((m) => [m?.id, m?.event, JSON.parse(m!.data).line])).toEqual([
      ['2', 'log', 'l2'],
      ['3', 'log', 'l3'],
    ]);
    at = ship(peer, at, 'l4\n');
    expect(JSON.parse((await reader.next())!.data).line).toBe('l4');
    await reader.close();
    const resumed = new SseReader(await w.api(`/${computer.id}/logs/stream`, { headers: { 'last-event-id': '1' } }));
    expect((await resumed.next())?.id).toBe('2');
    await resumed.close();
    const { token } = await expectJson<{ token: string }>(await w.api(`/${computer.id}/stream-token`, { method: 'POST' }), 200);
    const byToken = await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/logs/stream?auth=${encodeURIComponent(token)}&lines=1`);
    expect(byToken.status).toBe(200);
    await byToken.body?.cancel();
    const other = await world();
    await expectError(await other.api(`/${computer.id}/logs`), 404, 'NOT_FOUND');
    await expectError(await other.api(`/${computer.id}/logs/stream`), 404, 'NOT_FOUND');
    for (const q of ['?lines=-1', '?lines=10001', '?lines=x', '?since=yesterday']) {
      await expectError(await w.api(`/${computer.id}/logs${q}`), 400, 'VALIDATION_FAILED');
    }
  });
});
