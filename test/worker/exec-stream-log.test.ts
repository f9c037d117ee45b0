/**
 * The log of a streamed command. It never outruns its SSE viewers: output is
 * stored but not acknowledged to the agent while the slowest viewer lags (so a
 * real agent stops sending and the process waits on its pipe), until the
 * viewer reads on, is dropped for stalling, or — before anyone connected — the
 * ticket expires. And an evicted object loses nothing a viewer could ask for.
 */
import { SELF, abortAllDurableObjects } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HOLD_CHARS, HOLD_FIRST_CHARS, STALL_MS } from '../../durable-objects/exec/stream-exec.ts';
import { TICKET_TTL_S } from '../../durable-objects/exec/tickets.ts';
import { parseSse, type SseMessage } from '../e2e/sse.ts';
import { BASE, expectJson } from './helpers.ts';
import { sleep, useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';
import { FRAME_OUTPUT, encodeFrame } from '../../schema/protocol.ts';

useAgentPeers();

const LINE = 1024;
const FRAME_BYTES = 256 * 1024;

/** Frame `n` of a command's stdout: FRAME_BYTES of numbered lines of `lineBytes` each. */
function frame(n: number, lineBytes = LINE): string {
  let out = '';
  const lines = FRAME_BYTES / lineBytes;
  for (let i = 0; i < lines; i++) {
    const tag = `${n * lines + i}`.padStart(10, '0');
    out += tag + 'x'.repeat(lineBytes - tag.length - 1) + '\n';
  }
  return out;
}

/** Frames that make at least `chars` characters of output events. */
const framesFor = (chars: number) => Math.ceil(chars / FRAME_BYTES) + 2;

async function streamedCommand() {
  const w = await world();
  const { computer, peer } = await runningComputer(w);
  const t = await expectJson<{ stream_url: string }>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'producer' } }), 202);
  const start = await peer.take('proc.start');
  return { peer, procId: start.params.proc_id, url: `${BASE}${t.stream_url}` };
}

/** Stdout bytes the object has acknowledged to the agent. */
const acked = (peer: ComputerPeer, procId: string) => peer.acks.filter((a) => a.proc_id === procId).at(-1)?.offsets.stdout ?? 0;

/**
 * Waits until the object has acknowledged something and the acks then stop
 * moving (the same value over several samples, so a busy machine that has not
 * got round to the frames yet does not look settled), and returns where they stand.
 */
async function settledAck(peer: ComputerPeer, procId: string): Promise<number> {
  await vi.waitFor(() => expect(acked(peer, procId)).toBeGreaterThan(0), { timeout: 30_000, interval: 50 });
  let last = -1;
  let same = 0;
  for (;;) {
    await sleep(200);
    const now = acked(peer, procId);
    same = now === last ? same + 1 : 0;
    if (same >= 3) return now;
    last = now;
  }
}

/** A viewer reading a stream at the pace the test sets. */
class Viewer {
  readonly messages: SseMessage[] = [];
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buf = '';
  ended = false;

  constructor(res: Response) {
    expect(res.status).toBe(200);
    this.reader = res.body!.getReader();
  }

  /** Reads until `done` holds or the stream ends (or fails: a dropped viewer). */
  async readUntil(done: () => boolean = () => false): Promise<void> {
    while (!this.ended && !done()) {
      const r = await this.reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) {
        this.ended = true;
        break;
      }
      const { messages, rest } = parseSse(this.buf + this.decoder.decode(r.value, { stream: true }));
      this.buf = rest;
      this.messages.push(...messages);
    }
  }

  async cancel(): Promise<void> {
    await this.reader.cancel();
  }

  get lastId(): number {
    return Number(this.messages.at(-1)?.id ?? 0);
  }
}

/** Every output line arrived once, in order, numbered 1..n with line i tagged i-1; then the exit. */
function expectComplete(messages: SseMessage[], lines: number): void {
  const outputs = messages.filter((m) => m.event === 'output');
  expect(outputs.length).toBe(lines);
  expect(messages.map((m) => Number(m.id))).toEqual(messages.map((_, i) => i + 1));
  outputs.forEach((m, i) => {
    const { line } = JSON.parse(m.data) as { line: string };
    if (Number(line.slice(0, 10)) !== i) throw new Error(`event ${m.id} holds line ${line.slice(0, 10)}, expected ${i}`);
  });
  expect(messages.at(-1)?.event).toBe('exit');
}

describe('a streamed command waits for its viewers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a viewer that does not read holds the acks; reading on releases them and loses nothing', async () => {
    const { peer, procId, url } = await streamedCommand();
    const viewer = new Viewer(await SELF.fetch(url));
    const frames = framesFor(HOLD_CHARS + 2 * 1024 * 1024);
    for (let n = 0; n < frames; n++) peer.output(procId, 'stdout', frame(n));
    const total = frames * FRAME_BYTES;

    const held = await settledAck(peer, procId);
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(total);

    const reading = viewer.readUntil();
    await vi.waitFor(() => expect(acked(peer, procId)).toBe(total), { timeout: 10_000, interval: 20 });
    peer.exit(procId, 0);
    await reading;
    expectComplete(viewer.messages, (frames * FRAME_BYTES) / LINE);
  });

  it('a viewer that takes nothing for the stall time is dropped, the command goes on, and Last-Event-ID resumes it', async () => {
    const { peer, procId, url } = await streamedCommand();
    const viewer = new Viewer(await SELF.fetch(url));
    const frames = framesFor(HOLD_CHARS + 2 * 1024 * 1024);
    for (let n = 0; n < frames; n++) peer.output(procId, 'stdout', frame(n));
    const held = await settledAck(peer, procId);
    expect(held).toBeLessThan(frames * FRAME_BYTES);

    // Past the stall time, the next output finds the viewer stalled and drops it.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + STALL_MS + 1000);
    peer.output(procId, 'stdout', frame(frames));
    const total = (frames + 1) * FRAME_BYTES;
    await vi.waitFor(() => expect(acked(peer, procId)).toBe(total), { timeout: 10_000, interval: 20 });
    await viewer.readUntil();
    expect(viewer.ended).toBe(true);

    peer.exit(procId, 0);
    const again = new Viewer(await SELF.fetch(url, { headers: { 'last-event-id': String(viewer.lastId) } }));
    await again.readUntil();
    expectComplete([...viewer.messages, ...again.messages], ((frames + 1) * FRAME_BYTES) / LINE);
  });

  it('a viewer that goes away lets go of the command at once, without waiting out the stall time', async () => {
    const { peer, procId, url } = await streamedCommand();
    const viewer = new Viewer(await SELF.fetch(url));
    const frames = framesFor(HOLD_CHARS + 2 * 1024 * 1024);
    for (let n = 0; n < frames; n++) peer.output(procId, 'stdout', frame(n));
    expect(await settledAck(peer, procId)).toBeLessThan(frames * FRAME_BYTES);

    // No write has to fail first: the object hears of it, and what it held back is acknowledged.
    await viewer.cancel();
    await vi.waitFor(() => expect(acked(peer, procId)).toBe(frames * FRAME_BYTES), { timeout: 2000, interval: 20 });
  });

  it('before the first viewer connects, output is held from its first byte', { timeout: 60_000 }, async () => {
    const { peer, procId, url } = await streamedCommand();
    const long = 16 * 1024;
    const frames = framesFor(HOLD_FIRST_CHARS);
    for (let n = 0; n < frames; n++) peer.output(procId, 'stdout', frame(n, long));
    const total = frames * FRAME_BYTES;
    expect(await settledAck(peer, procId)).toBeLessThan(total);

    const viewer = new Viewer(await SELF.fetch(url));
    const reading = viewer.readUntil();
    await vi.waitFor(() => expect(acked(peer, procId)).toBe(total), { timeout: 20_000, interval: 50 });
    peer.exit(procId, 0);
    await reading;
    expectComplete(viewer.messages, (frames * FRAME_BYTES) / long);
  });

  it('with nobody connected once the ticket expired, output is acknowledged again', { timeout: 60_000 }, async () => {
    const { peer, procId } = await streamedCommand();
    const long = 16 * 1024;
    const frames = framesFor(HOLD_FIRST_CHARS);
    for (let n = 0; n < frames; n++) peer.output(procId, 'stdout', frame(n, long));
    const total = frames * FRAME_BYTES;
    expect(await settledAck(peer, procId)).toBeLessThan(total);

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + TICKET_TTL_S * 1000 + 1000);
    peer.output(procId, 'stdout', frame(frames, long));
    await vi.waitFor(() => expect(acked(peer, procId)).toBe(total + FRAME_BYTES), { timeout: 10_000, interval: 20 });
  });

  it('one output frame of several MiB is stored in rows SQLite takes, and resumes from any event in it', async () => {
    const { peer, procId, url } = await streamedCommand();
    let big = '';
    for (let n = 0; n < 16; n++) big += frame(n);
    peer.output(procId, 'stdout', big);
    peer.exit(procId, 0);
    const viewer = new Viewer(await SELF.fetch(url));
    await viewer.readUntil();
    const lines = big.length / LINE;
    expectComplete(viewer.messages, lines);

    // From a point deep inside the frame, the stored rows give exactly the rest.
    const again = new Viewer(await SELF.fetch(url, { headers: { 'last-event-id': '3001' } }));
    await again.readUntil();
    expectComplete([...viewer.messages.slice(0, 3001), ...again.messages], lines);
  });
});

describe('a streamed command across a reset of its object', () => {
  it('keeps its log and its half line: the agent resumes from the stored offsets, and Last-Event-ID from the stored events', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const t = await expectJson<{ stream_url: string }>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'producer' } }), 202);
    const procId = (await peer.take('proc.start')).params.proc_id;
    const url = `${BASE}${t.stream_url}`;
    const viewer = new Viewer(await SELF.fetch(url));
    for (let n = 0; n < 3; n++) peer.output(procId, 'stdout', frame(n));
    peer.output(procId, 'stdout', 'half a li');
    const before = (3 * FRAME_BYTES) / LINE;
    await viewer.readUntil(() => viewer.messages.length === before);
    const stored = await settledAck(peer, procId); // acknowledged, and so stored

    // The object is torn down mid-command, as a crash or a deploy would: every connection to it breaks.
    await abortAllDurableObjects();
    await viewer.readUntil();
    const back = await w.host.computer(computer.id, { state: 'running' });
    expect(await back.take('proc.attach')).toMatchObject({ proc_id: procId, offsets: { stdout: stored } });
    back.sendBinary(encodeFrame({ kind: FRAME_OUTPUT, stream: 'stdout', proc_id: procId, offset: stored, payload: new TextEncoder().encode('ne\n') }));
    back.exit(procId, 0);

    const again = new Viewer(await SELF.fetch(url, { headers: { 'last-event-id': '100' } }));
    await again.readUntil();
    const all = [...viewer.messages.slice(0, 100), ...again.messages];
    expect(all.map((m) => Number(m.id))).toEqual(all.map((_, i) => i + 1));
    expect(all.length).toBe(before + 2);
    expect(JSON.parse(all.at(-2)!.data)).toEqual({ line: 'half a line\n', stream: 'stdout' });
    expect(all.at(-1)!.event).toBe('exit');
  });
});
