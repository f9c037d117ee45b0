import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub } from './computer-fixtures.ts';
import { equalBytes, join, randomBytes } from './ws-client.ts';
import { attach, terminalSession, text } from './terminal-fixtures.ts';
import { TERMINAL_RING_BYTES } from '../../durable-objects/exec/terminal-ring.ts';
import { TERMINAL_IDLE_MS, type TerminalSink } from '../../durable-objects/exec/terminal.ts';
import { STDIN_WINDOW_BYTES } from '../../durable-objects/exec/stdin-pump.ts';
import { nextAlarm } from '../../durable-objects/computer/usage.ts';
import { FRAME_OUTPUT, encodeFrame } from '../../schema/protocol.ts';

useAgentPeers();

/** Numbered lines, so a wrong cut or a lost chunk shows. */
function lines(from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += `line ${String(i).padStart(6, '0')} ${'x'.repeat(40)}\r\n`;
  return s;
}

/** The session's idle deadline as the object holds it. */
const idleSince = (computerId: string, sid: string) =>
  runInDurableObject(computerStub(computerId), (obj) => (obj.streams.procs.sink(sid) as TerminalSink).state.idle_since);

describe('terminal relay', () => {
  it('relays PTY output to the socket as binary frames, and binary and text frames back as keystrokes', async () => {
    const { peer, sid, session } = await terminalSession();
    const client = await attach(session.ws_url);
    peer.output(sid, 'pty', 'user@box:~$ ');
    await client.until(() => client.text() === 'user@box:~$ ');
    client.send(text('ls -la\r'));
    client.send('echo héllo\r');
    client.send(Uint8Array.of(3)); // ^C
    await client.until(() => peer.stdinOf(sid).byteLength === 7 + 12 + 1);
    expect(equalBytes(peer.stdinOf(sid), join([text('ls -la\r'), text('echo héllo\r'), Uint8Array.of(3)]))).toBe(true);
  });

  it('re-attaching replays the recent output (the last 64 KiB; older output is trimmed) and then continues', async () => {
    expect(TERMINAL_RING_BYTES).toBeGreaterThanOrEqual(64 * 1024);
    const { peer, sid, session } = await terminalSession();
    const first = await attach(session.ws_url);
    const all = lines(0, 4000); // ~200 KiB
    for (let at = 0; at < all.length; at += 7000) peer.output(sid, 'pty', all.slice(at, at + 7000));
    await first.until(() => first.bytes().byteLength === all.length);
    expect(first.text()).toBe(all);
    first.close();
    await sleep(50);

    const again = await attach(session.ws_url);
    await again.until(() => again.bytes().byteLength === TERMINAL_RING_BYTES);
    await sleep(50);
    expect(again.text()).toBe(all.slice(all.length - TERMINAL_RING_BYTES));
    peer.output(sid, 'pty', 'after\r\n');
    await again.until(() => again.text().endsWith('after\r\n'));
    expect(again.bytes().byteLength).toBe(TERMINAL_RING_BYTES + 7);
  });

  it('a short session replays all of its output', async () => {
    const { peer, sid, session } = await terminalSession();
    peer.output(sid, 'pty', 'motd\r\n');
    peer.output(sid, 'pty', '$ ');
    await sleep(50);
    const client = await attach(session.ws_url);
    await client.until(() => client.text() === 'motd\r\n$ ');
  });

  it('two sockets watch one session: both see all output, and both can type', async () => {
    const { peer, sid, session } = await terminalSession();
    const a = await attach(session.ws_url);
    const b = await attach(session.ws_url);
    peer.output(sid, 'pty', 'shared screen\r\n');
    await a.until(() => a.text() === 'shared screen\r\n');
    await b.until(() => b.text() === 'shared screen\r\n');
    a.send('from a;');
    await sleep(20);
    b.send('from b;');
    await a.until(() => new TextDecoder().decode(peer.stdinOf(sid)) === 'from a;from b;');
    // One leaving does not affect the other.
    a.close();
    await sleep(30);
    peer.output(sid, 'pty', 'still here');
    await b.until(() => b.text().endsWith('still here'));
    expect(await idleSince(session.computer_id, sid)).toBeNull();
  });

  it('the shell exiting closes every socket with 4000 "shell exited with code N"; attaching afterwards replays and closes the same way', async () => {
    const { peer, sid, session } = await terminalSession();
    const a = await attach(session.ws_url);
    const b = await attach(session.ws_url);
    peer.output(sid, 'pty', 'logout\r\n');
    peer.exit(sid, 3);
    for (const c of [a, b]) expect(await c.waitClosed()).toEqual({ code: 4000, reason: 'shell exited with code 3' });
    expect(a.text()).toBe('logout\r\n');
    const late = await attach(session.ws_url);
    expect(await late.waitClosed()).toEqual({ code: 4000, reason: 'shell exited with code 3' });
    expect(late.text()).toBe('logout\r\n');
  });

  it('pasting more than the stdin window into a terminal arrives byte-exact, never more than the window unacknowledged', async () => {
    const { peer, sid, session } = await terminalSession();
    const client = await attach(session.ws_url);
    peer.holdStdinAcks(true);
    const paste = randomBytes(STDIN_WINDOW_BYTES + 500_000, 5);
    for (let at = 0; at < paste.byteLength; at += 64 * 1024) client.send(paste.subarray(at, at + 64 * 1024));
    await client.until(() => peer.stdinOf(sid).byteLength === STDIN_WINDOW_BYTES);
    await sleep(100);
    expect(peer.stdinUnacked(sid)).toBe(STDIN_WINDOW_BYTES);
    peer.holdStdinAcks(false);
    await client.until(() => peer.stdinOf(sid).byteLength === paste.byteLength);
    expect(equalBytes(peer.stdinOf(sid), paste)).toBe(true);
  });

  it('an output frame that starts past what the object has is refused, and the process is asked to resend from there', async () => {
    const { peer, sid, session } = await terminalSession();
    const client = await attach(session.ws_url);
    peer.output(sid, 'pty', 'first ');
    await client.until(() => client.text() === 'first ');
    const attach_ = peer.take('proc.attach');
    peer.sendBinary(encodeFrame({ kind: FRAME_OUTPUT, stream: 'pty', proc_id: sid, offset: 100, payload: text('after a hole') }));
    expect(await attach_).toMatchObject({ proc_id: sid, offsets: { pty: 6 } });
    // What the agent sends again from the object's offset is taken; the hole never reached the socket.
    peer.sendBinary(encodeFrame({ kind: FRAME_OUTPUT, stream: 'pty', proc_id: sid, offset: 6, payload: text('second') }));
    await client.until(() => client.text() === 'first second');
  });

  it('output is acknowledged to the agent only as it is taken, by offset', async () => {
    const { peer, sid, session } = await terminalSession();
    await attach(session.ws_url);
    peer.output(sid, 'pty', 'a'.repeat(1000));
    peer.output(sid, 'pty', 'b'.repeat(500));
    await sleep(100);
    const last = peer.acks.filter((a) => a.proc_id === sid).at(-1);
    expect(last?.offsets).toEqual({ pty: 1500 });
  });
});

describe('terminal sessions without sockets', () => {
  it('start their idle clock when the last socket leaves, and end from the alarm after the idle time', async () => {
    const { peer, sid, session } = await terminalSession();
    const id = session.computer_id;
    const client = await attach(session.ws_url);
    await sleep(20);
    expect(await idleSince(id, sid)).toBeNull();
    // Watched: the alarm leaves it alone.
    await runDurableObjectAlarm(computerStub(id));
    client.close();
    await client.until(() => true);
    await sleep(50);
    const since = await idleSince(id, sid);
    expect(since).not.toBeNull();
    expect(Date.now() - since!).toBeLessThan(2000);
    expect(peer.requests.filter((r) => r.type === 'proc.signal')).toEqual([]);

    // Not yet idle long enough: nothing happens.
    await runDurableObjectAlarm(computerStub(id));
    expect(peer.requests.filter((r) => r.type === 'proc.signal')).toEqual([]);

    // Ten minutes later (backdated), the alarm hangs it up.
    await runInDurableObject(computerStub(id), (obj) => {
      (obj.streams.procs.sink(sid) as TerminalSink).state.idle_since = Date.now() - TERMINAL_IDLE_MS - 1000;
    });
    await runDurableObjectAlarm(computerStub(id));
    expect(await peer.take('proc.signal')).toMatchObject({ proc_id: sid, signal: 'HUP' });
    peer.exit(sid, 129, { signal: 1 });
    await peer.forgotten(sid);
    const late = await attach(session.ws_url);
    expect(await late.waitClosed()).toEqual({ code: 4000, reason: 'shell exited with code 129' });
  });

  it("a terminal's idle deadline is one of the alarm's inputs", () => {
    const base = { running: true, billedUntil: 1_000_000, autoStopS: 0, lastActivity: 0, busy: true, logExpiry: null };
    expect(nextAlarm({ ...base, terminalExpiry: null })).toBe(1_060_000);
    expect(nextAlarm({ ...base, terminalExpiry: 1_030_000 })).toBe(1_030_000);
    expect(nextAlarm({ ...base, running: false, terminalExpiry: 5_000_000 })).toBe(5_000_000);
  });

  it('an evicted object keeps the replay ring and the session: re-attaching shows the output, and live output reaches old and new sockets', async () => {
    const { peer, sid, session } = await terminalSession();
    const id = session.computer_id;
    const first = await attach(session.ws_url);
    const before = lines(0, 100);
    peer.output(sid, 'pty', before);
    await first.until(() => first.text() === before);
    await sleep(50); // acknowledged, and so stored
    await evictDurableObject(computerStub(id));
    const second = await attach(session.ws_url);
    await second.until(() => second.text() === before);
    peer.output(sid, 'pty', 'after eviction\r\n');
    await second.until(() => second.text() === before + 'after eviction\r\n');
    await first.until(() => first.text() === before + 'after eviction\r\n');
    second.send('typed after eviction');
    await second.until(() => new TextDecoder().decode(peer.stdinOf(sid)) === 'typed after eviction');
  });
});
