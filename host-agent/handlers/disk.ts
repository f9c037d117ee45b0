/**
 * Moving a computer's disk, agent side (protocol 1.2).
 *
 * As the source: reads the archive from the driver and sends it as disk
 * frames with byte offsets, never more than DISK_WINDOW_BYTES beyond what the
 * server acknowledged (the archive's reader waits meanwhile), then answers
 * with the archive's length and sha256.
 *
 * As the target: writes the frames it receives into the driver's import in
 * order, acknowledges each once written, and at import_done checks length and
 * sha256 before the driver puts the disk in place.
 *
 * A disk.cancel, or the connection dropping, ends either side: the export
 * stops reading, the import drops what it received. A target whose writes
 * fail says disk.cancel itself, so the move ends at once.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DISK_FRAME_BYTES,
  DISK_WINDOW_BYTES,
  encodeDiskFrame,
  type ComputerSpec,
  type DiskDigest,
  type DiskFrame,
  type LifecycleResult,
} from '../../schema/protocol.ts';
import { DriverError, type ComputerDriver, type DiskImport } from '../drivers/driver.ts';
import type { ProcOutlet } from './procs.ts';
import type { Logger } from '../log.ts';

/** A source that hears nothing from the server for this long gives up. */
const CREDIT_WAIT_MS = 120_000;

interface Export {
  transferId: string;
  acked: number;
  /** Why it must stop, once it must. */
  stopped: string | null;
  wake: () => void;
}

interface Import {
  transferId: string;
  sink: DiskImport;
  received: number;
  hash: Hash;
  /** Writes in frame order. */
  chain: Promise<void>;
  failed: string | null;
  committing: boolean;
}

export class DiskMover {
  private exporting: Export | null = null;
  private importing: Import | null = null;
  private readonly driver: ComputerDriver;
  private readonly computerId: string;
  private readonly out: ProcOutlet;
  private readonly log: Logger;

  constructor(driver: ComputerDriver, computerId: string, out: ProcOutlet, log: Logger) {
    this.driver = driver;
    this.computerId = computerId;
    this.out = out;
    this.log = log;
  }

  // ---------------------------------------------------------- source

  async export(transferId: string): Promise<DiskDigest> {
    this.stopExport('a newer export began');
    const archive = await this.driver.exportDisk(this.computerId);
    const ex: Export = { transferId, acked: 0, stopped: null, wake: () => {} };
    this.exporting = ex;
    const hash = createHash('sha256');
    let offset = 0;
    try {
      for await (const chunk of frames(archive.stream, DISK_FRAME_BYTES)) {
        while (!ex.stopped && offset + chunk.byteLength - ex.acked > DISK_WINDOW_BYTES) await this.credit(ex);
        if (ex.stopped) throw new DriverError('FAILED', `the export stopped: ${ex.stopped}`);
        hash.update(chunk);
        if (!this.out.sendBinary(encodeDiskFrame({ transfer_id: transferId, offset, payload: chunk }))) {
          throw new DriverError('FAILED', 'the connection to the server dropped');
        }
        offset += chunk.byteLength;
      }
      await archive.done;
      if (ex.stopped) throw new DriverError('FAILED', `the export stopped: ${ex.stopped}`);
      this.log(`computer ${this.computerId}: exported ${offset} disk bytes`);
      return { bytes: offset, sha256: hash.digest('hex') };
    } catch (err) {
      archive.cancel();
      throw err;
    } finally {
      if (this.exporting === ex) this.exporting = null;
    }
  }

  /** The server's credit: the target has written up to `offset`. */
  ack(transferId: string, offset: number): void {
    const ex = this.exporting;
    if (!ex || ex.transferId !== transferId || offset <= ex.acked) return;
    ex.acked = offset;
    ex.wake();
  }

  private credit(ex: Export): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        ex.stopped ??= `no acknowledgement for ${CREDIT_WAIT_MS / 1000} s`;
        resolve();
      }, CREDIT_WAIT_MS);
      ex.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private stopExport(reason: string): void {
    const ex = this.exporting;
    if (!ex) return;
    ex.stopped ??= reason;
    ex.wake();
  }

  // ---------------------------------------------------------- target

  async importBegin(transferId: string, spec: ComputerSpec): Promise<Record<string, never>> {
    await this.abortImport();
    const sink = await this.driver.importDisk(spec, (p) => this.log(`computer ${this.computerId}: [${p.phase}] ${p.message}`));
    this.importing = { transferId, sink, received: 0, hash: createHash('sha256'), chain: Promise.resolve(), failed: null, committing: false };
    return {};
  }

  /** A disk frame relayed by the server: written in order, acknowledged once written. */
  frame(f: DiskFrame): void {
    const imp = this.importing;
    if (!imp || imp.transferId !== f.transfer_id) {
      this.log(`computer ${this.computerId}: dropped a disk frame of no import under way`);
      return;
    }
    if (imp.failed || imp.committing) return;
    if (f.offset !== imp.received) return this.importFailed(imp, `disk bytes arrived at ${f.offset}, expected ${imp.received}`);
    const payload = f.payload;
    imp.received += payload.byteLength;
    imp.hash.update(payload);
    const end = imp.received;
    imp.chain = imp.chain.then(async () => {
      if (imp.failed) return;
      try {
        await imp.sink.write(payload);
        this.out.sendJson({ type: 'disk.ack', transfer_id: imp.transferId, offset: end });
      } catch (err) {
        this.importFailed(imp, (err as Error).message);
      }
    });
  }

  /** The import cannot go on: the server hears it now (its source would otherwise wait for acknowledgements), import_done reports it. */
  private importFailed(imp: Import, reason: string): void {
    if (imp.failed) return;
    imp.failed = reason;
    this.out.sendJson({ type: 'disk.cancel', transfer_id: imp.transferId, reason: reason.slice(0, 1000) });
  }

  async importDone(transferId: string, digest: DiskDigest): Promise<LifecycleResult> {
    const imp = this.importing;
    if (!imp || imp.transferId !== transferId) throw new DriverError('BAD_REQUEST', `no import of transfer ${transferId} is under way`);
    imp.committing = true;
    try {
      await imp.chain;
      if (imp.failed) throw new DriverError('FAILED', `the import failed: ${imp.failed}`);
      if (imp.received !== digest.bytes) throw new DriverError('FAILED', `received ${imp.received} disk bytes, the source sent ${digest.bytes}`);
      const sha256 = imp.hash.digest('hex');
      if (sha256 !== digest.sha256) throw new DriverError('FAILED', `the disk archive's sha256 is ${sha256}, the source's ${digest.sha256}`);
      await imp.sink.commit();
    } catch (err) {
      await imp.sink.abort();
      throw err;
    } finally {
      if (this.importing === imp) this.importing = null;
    }
    this.log(`computer ${this.computerId}: imported ${digest.bytes} disk bytes (sha256 ${digest.sha256.slice(0, 12)}…)`);
    return { state: await this.driver.state(this.computerId) };
  }

  /** Drops an import under way (not one being committed: that one answers for itself). */
  async abortImport(): Promise<void> {
    const imp = this.importing;
    if (!imp || imp.committing) return;
    this.importing = null;
    imp.failed ??= 'aborted';
    await imp.chain;
    await imp.sink.abort();
  }

  // ---------------------------------------------------------- both

  cancel(transferId: string): void {
    if (this.exporting?.transferId === transferId) this.stopExport('the server called the move off');
    if (this.importing?.transferId === transferId) void this.abortImport().catch((e) => this.log(`computer ${this.computerId}: dropping an import failed: ${(e as Error).message}`));
  }

  /** Without the server nothing of a transfer can be relayed or acknowledged: both sides end. */
  connectionLost(): void {
    this.stopExport('the connection to the server dropped');
    void this.abortImport().catch((e) => this.log(`computer ${this.computerId}: dropping an import failed: ${(e as Error).message}`));
  }
}

/** The stream's bytes in pieces of `size` (the last one shorter). */
async function* frames(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    parts.push(chunk);
    have += chunk.byteLength;
    while (have >= size) {
      const all = Buffer.concat(parts);
      yield all.subarray(0, size);
      parts = [all.subarray(size)];
      have -= size;
    }
  }
  if (have > 0) yield Buffer.concat(parts);
}
