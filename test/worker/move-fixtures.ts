/**
 * Moves between two scripted hosts (agent-peer.ts): a stopped computer on a
 * source host, a second host in a region of its own, a source that exports a
 * disk archive as disk frames within the window, and a target that takes the
 * frames, acknowledges each once "written", checks length and sha256 at
 * import_done, and redials as the computer's agent when the move is done.
 */
import { DISK_FRAME_BYTES, DISK_WINDOW_BYTES, encodeDiskFrame } from '../../schema/protocol.ts';
import { connectHost, type ComputerPeer, type DiskEvent, type HostPeer } from './agent-peer.ts';
import { stoppedComputer, world, type ComputerView, type World } from './computer-fixtures.ts';

export interface MoveWorld extends World {
  computer: ComputerView;
  /** The computer's agent on its first host. */
  source: ComputerPeer;
  /** A connected host of another region. */
  far: HostPeer;
  /** POST …/move to the far host's region. */
  move(region?: string): Promise<Response>;
}

export async function moveWorld(): Promise<MoveWorld> {
  const w = await world();
  const { computer, peer: source } = await stoppedComputer(w);
  const far = await connectHost();
  return { ...w, computer, source, far, move: (region = far.region) => w.api(`/${computer.id}/move`, { method: 'POST', body: { region } }) };
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Deterministic bytes that are not all alike. */
export function archiveBytes(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export interface ExportScript {
  /** Largest number of bytes ever sent beyond the last disk.ack the source had. */
  maxAhead: number;
  /** disk.ack offsets the source received, in order. */
  acks: number[];
}

/**
 * Answers computer.export by sending `bytes` in frames, never more than the window
 * beyond the acknowledged offset (unless `greedy`), then the digest (or `lie` about it).
 */
export function scriptExport(source: ComputerPeer, bytes: Uint8Array, opts: { greedy?: boolean; lie?: boolean; frameBytes?: number } = {}): ExportScript {
  const script: ExportScript = { maxAhead: 0, acks: [] };
  let acked = 0;
  let wake = () => {};
  source.onDiskEvent((e) => {
    if (e.type !== 'disk.ack') return;
    script.acks.push(e.offset);
    acked = Math.max(acked, e.offset);
    wake();
  });
  source.onRequest('computer.export', async (req) => {
    const size = opts.frameBytes ?? DISK_FRAME_BYTES;
    for (let at = 0; at < bytes.byteLength; at += size) {
      const payload = bytes.subarray(at, at + size);
      while (!opts.greedy && at + payload.byteLength - acked > DISK_WINDOW_BYTES) await new Promise<void>((r) => (wake = r));
      script.maxAhead = Math.max(script.maxAhead, at + payload.byteLength - acked);
      source.sendBinary(encodeDiskFrame({ transfer_id: req.transfer_id, offset: at, payload }));
    }
    const sha256 = opts.lie ? '0'.repeat(64) : await sha256Hex(bytes);
    return { data: { bytes: bytes.byteLength, sha256 } };
  });
  return script;
}

export interface TargetScript {
  /** The target's computer socket (the move's second socket). */
  peer: ComputerPeer;
  /** Every byte received, in order. */
  received(): Uint8Array;
  /** While held, frames are not acknowledged; releasing acknowledges everything received. */
  holdAcks(hold: boolean): void;
  /** The target's socket as the computer's own agent, once the move is done and it has redialed. */
  primary: Promise<ComputerPeer>;
}

/** Waits for the attach order on the far host, opens the target socket and plays a healthy target. */
export async function scriptTarget(far: HostPeer, id: string, opts: { holdAcks?: boolean } = {}): Promise<TargetScript> {
  const order = await far.take('computer.attach');
  if (order.computer_id !== id) throw new Error(`attach order for ${order.computer_id}, expected ${id}`);
  const peer = await far.dial(id);
  const parts: Uint8Array[] = [];
  let receivedBytes = 0;
  let ackedBytes = 0;
  let holding = opts.holdAcks ?? false;
  const ack = () => {
    if (holding || ackedBytes === receivedBytes) return;
    ackedBytes = receivedBytes;
    peer.send({ type: 'disk.ack', transfer_id: transferId, offset: ackedBytes });
  };
  let transferId = '';
  peer.onDiskEvent((e: DiskEvent) => {
    if (e.type !== 'disk.frame') return;
    transferId = e.transfer_id;
    parts.push(e.payload);
    receivedBytes += e.payload.byteLength;
    ack();
  });
  const received = () => {
    const out = new Uint8Array(receivedBytes);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  };
  peer.onRequest('computer.import_done', async (req) => {
    const got = received();
    if (got.byteLength !== req.bytes || (await sha256Hex(got)) !== req.sha256) {
      return { error: { code: 'FAILED', message: `received ${got.byteLength} bytes whose sha256 does not match` } };
    }
    return { data: { state: 'stopped' } };
  });
  // As a real agent does: a socket closed by the server is redialed, and lands where the route says.
  const primary = peer.closed.then(async (c) => {
    if (c.code !== 4001) throw new Error(`target socket closed with ${c.code} ${c.reason}`);
    return far.computer(id, { state: 'stopped' });
  });
  primary.catch(() => undefined);
  await peer.attach('absent', { as: 'target' });
  return {
    peer,
    received,
    holdAcks: (hold) => {
      holding = hold;
      ack();
    },
    primary,
  };
}
