/**
 * The events socket's window and clipboard producers against a scripted
 * desktop daemon behind the relay: they wait for a desktop that is not up
 * (producer.unavailable), start when it comes up (producer.started, the first
 * look a baseline), then send what changes to the sockets that asked for it.
 */
import { Buffer } from 'node:buffer';
import { runDurableObjectAlarm } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { computerStub, getComputer, runningComputer, world, type World } from './computer-fixtures.ts';
import { connect, type ClientSocket } from './ws-client.ts';
import { LengthPrefixedDecoder, encodeFrame } from '../../schema/frames.ts';
import { DESKTOP_CONTROL_PORT, DESKTOP_MAX_HEADER_BYTES, DESKTOP_MAX_PAYLOAD_BYTES, DESKTOP_PROTOCOL, type ClipboardState, type WindowInfo } from '../../schema/desktop.ts';

useAgentPeers();

const LIMITS = { maxHeader: DESKTOP_MAX_HEADER_BYTES, maxPayload: DESKTOP_MAX_PAYLOAD_BYTES };
const open = (w: World, id: string, q: string) => connect(`/api/v1/computers/${id}/events?${q}`, { authorization: `Bearer ${w.tenant.apiKey}` }, ['miosa-events-v1']);
const frames = (s: ClientSocket) => s.messages.map((m) => JSON.parse(m as string) as { type: string; data: Record<string, unknown> });
const seen = (s: ClientSocket, type: string, pick: (d: Record<string, unknown>) => boolean = () => true) => frames(s).some((f) => f.type === type && pick(f.data));

const win = (id: string, focused: boolean): WindowInfo => ({
  id, title: `window ${id}`, app: 'Xfce4-terminal', pid: 7, x: 0, y: 0, width: 100, height: 80,
  geometry: { x: 0, y: 0, width: 100, height: 80 }, focused, minimized: false,
});

/** A desktop daemon on the relay: `state` answers what the test sets, NOT_READY until `up`. */
function scriptedDaemon(peer: ComputerPeer) {
  const desk = { up: false, windows: [] as WindowInfo[], clipboard: null as ClipboardState | null, asked: [] as Record<string, unknown>[] };
  const lanes = new Map<string, { decoder: LengthPrefixedDecoder; read: number }>();
  const send = (st: Parameters<typeof peer.relay.data>[0], header: object) => peer.relay.data(st, Buffer.concat(encodeFrame(LIMITS, header)));
  peer.relay.onOpen = (st) => {
    expect(st.open.target).toEqual({ kind: 'computer_tcp', port: DESKTOP_CONTROL_PORT });
    peer.relay.accept(st);
    lanes.set(st.open.stream_id, { decoder: new LengthPrefixedDecoder(LIMITS), read: 0 });
    send(st, { t: 'hello', version: 'scripted', protocol: DESKTOP_PROTOCOL });
  };
  peer.relay.onActivity = (st) => {
    const lane = lanes.get(st.open.stream_id);
    if (!lane) return;
    const bytes = peer.relay.bytesOf(st).subarray(lane.read);
    lane.read += bytes.byteLength;
    for (const f of lane.decoder.push(bytes)) {
      const req = f.header as { id: number; op: string; args: Record<string, unknown> };
      expect(req.op).toBe('state');
      desk.asked.push(req.args);
      if (!desk.up) {
        send(st, { t: 'res', id: req.id, ok: false, error: { code: 'NOT_READY', message: 'the desktop is starting', retry_after: 1 } });
        continue;
      }
      const clip = req.args.clipboard && desk.clipboard ? { ...desk.clipboard } : null;
      if (clip && clip.sha256 === req.args.known_sha256) delete clip.text;
      send(st, { t: 'res', id: req.id, ok: true, data: { windows: desk.windows, clipboard: clip } });
    }
    peer.relay.credit(st);
  };
  return desk;
}

describe('window and clipboard events', () => {
  it('wait for a desktop that is not up, start when it comes up, and send its changes to the sockets that asked', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const desk = scriptedDaemon(peer);
    const both = await open(w, computer.id, 'subscribe=window,clipboard');
    const windowsOnly = await open(w, computer.id, 'subscribe=window');
    const notUp = { reason: 'the desktop is not up yet; its events start when it is' };
    await both.until(() => seen(both, 'producer.unavailable', (d) => d.producer === 'clipboard'), 15_000);
    await windowsOnly.until(() => seen(windowsOnly, 'producer.unavailable'), 15_000);
    expect(frames(both)).toEqual([
      { type: 'producer.unavailable', data: { producer: 'window', ...notUp } },
      { type: 'producer.unavailable', data: { producer: 'clipboard', ...notUp } },
    ].map((f) => expect.objectContaining(f)));

    desk.windows = [win('11', true)];
    desk.up = true;
    await both.until(() => seen(both, 'producer.started', (d) => d.producer === 'clipboard'), 15_000);
    await windowsOnly.until(() => seen(windowsOnly, 'producer.started'), 15_000);
    // What was already open is the baseline, not an event.
    const before = both.messages.length;

    desk.windows = [win('11', false), win('12', true)];
    desk.clipboard = { sha256: 'ab'.repeat(32), bytes: 5, truncated: false, text: 'hello' };
    await both.until(() => seen(both, 'clipboard.changed') && seen(both, 'window.focused'), 15_000);
    await windowsOnly.until(() => seen(windowsOnly, 'window.focused'), 15_000);
    expect(frames(both).slice(before).map((f) => [f.type, f.data.id ?? f.data.text])).toEqual([
      ['window.opened', '12'],
      ['window.focused', '12'],
      ['clipboard.changed', 'hello'],
    ]);
    expect(frames(both).at(-1)!.data).toEqual({ text: 'hello', bytes: 5, truncated: false });
    expect(frames(windowsOnly).map((f) => f.type)).toEqual(['producer.unavailable', 'producer.started', 'window.opened', 'window.focused']);
    // Once it has the text, the object asks without it.
    await peer.relay.until(() => desk.asked.some((a) => a.known_sha256 === 'ab'.repeat(32)), 'a look that knows the clipboard');
    both.close();
    windowsOnly.close();
  });

  it("the object's own looks at the desktop are not use: a computer whose only traffic is an events socket still auto-stops", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const desk = scriptedDaemon(peer);
    desk.up = true;
    const res = await w.api(`/${computer.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 2 } });
    expect(res.status).toBe(200);
    const s = await open(w, computer.id, 'subscribe=window,clipboard');
    await s.until(() => seen(s, 'producer.started', (d) => d.producer === 'clipboard'), 15_000);
    // Looks go on for longer than the computer may idle, and nothing else touches it.
    const looked = desk.asked.length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(desk.asked.length).toBeGreaterThan(looked);
    await runDurableObjectAlarm(computerStub(computer.id));
    await peer.relay.until(() => peer.requests.some((r) => r.type === 'computer.stop'), 'the auto-stop');
    expect(['stopping', 'stopped']).toContain((await getComputer(w, computer.id)).status);
    s.close();
  });
});
