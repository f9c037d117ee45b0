/**
 * What the host agent asks of whatever makes computers real. The sandbox
 * driver (Linux namespaces) is the first; a KVM microVM driver implements the same
 * interface later, talking to the same guest agent over virtio-serial.
 *
 * Every method is idempotent: the agent may repeat a request after a dropped
 * socket, and "start" on a running computer or "stop" on a stopped one
 * succeeds without doing anything.
 */
import type { EventEmitter } from 'node:events';
import type { Duplex, Readable } from 'node:stream';
import type { z } from 'zod';
import type { ActualState, AgentErrorCode, ComputerSpec, ExecRunParams, ExecRunResult, OutputStream, ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
import type { ComputerEvent, FileStream, FsDeleted, FsListing, FsRequest, FsStat, FsUnpacked, WatchProducers, WatchStarted } from '../../schema/guest.ts';

/** A watch that runs: the producers it could not have, and how to end it. */
export interface WatchHandle extends WatchStarted {
  stop(): Promise<void>;
}

/** What a file operation answers: a listing, a path's stat, or a deletion. */
export type FsAnswer = FsListing | FsStat | z.infer<typeof FsDeleted> | z.infer<typeof FsUnpacked>;

export interface Progress {
  /** Short phase name, e.g. "template", "disk", "boot", "apps". */
  phase: string;
  message: string;
  /** 0..1 when known. */
  fraction?: number;
}

export type ProgressFn = (p: Progress) => void;

export interface ComputerMetrics {
  cpu_percent: number;
  memory_percent: number;
  memory_bytes: number;
  /** Bytes in use on the computer's disk and their share of its size (drivers with disk quotas). */
  disk_bytes?: number;
  disk_percent?: number;
}

/** How a streamed process ended, as the computer reports it. */
export interface StreamExit {
  exit_code: number;
  signal: number | null;
  timed_out: boolean;
  /** Output past the start's `output_limit` was dropped. */
  truncated?: boolean;
}

/**
 * A streamed process inside a computer: output with byte offsets (never
 * repeated), sent at most `window` bytes ahead of what ack() confirmed, so a
 * consumer that stops acknowledging stops the process (it blocks on output)
 * instead of losing bytes; flow-controlled stdin; resize; signals.
 */
export interface StreamProcess
  extends EventEmitter<{
    output: [stream: OutputStream, data: Buffer, offset: number];
    /** Bytes from..to were lost before this handle saw them (only when a re-attach came too late). */
    gap: [stream: OutputStream, from: number, to: number];
    exit: [exit: StreamExit];
    detached: [];
  }> {
  readonly pid: number;
  /** Resolves once every byte is written into the process; `offset` (where they start) lets a resent write skip what was taken. */
  write(data: Uint8Array, offset?: number): Promise<void>;
  closeStdin(): Promise<void>;
  resize(rows: number, cols: number): Promise<void>;
  /** Signals the process's whole group. */
  signal(signal: number, group?: boolean): Promise<void>;
  ack(offsets: StreamOffsets): Promise<void>;
  /** Stops receiving events; the process keeps running. */
  detach(): Promise<void>;
  /** Drops an exited process's buffered output. */
  forget(): Promise<void>;
}

/** A stopped computer's disk being read out as one archive, for a move to another host. */
export interface DiskExport {
  /** The archive's bytes; reading slowly makes the reader wait (that is the flow control). */
  readonly stream: Readable;
  /** Resolves when the whole archive has been produced; rejects when reading the disk failed or was cancelled. */
  readonly done: Promise<void>;
  /** Stops reading the disk; `done` rejects. */
  cancel(): void;
}

/** A disk archive being written into a new disk for a computer, invisible to list() and state() until commit(). */
export interface DiskImport {
  /** Resolves once the bytes are taken; a slow disk makes it wait. */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the archive and puts the disk in place, stopped; on failure nothing is left behind. */
  commit(): Promise<void>;
  /** Drops everything written so far. */
  abort(): Promise<void>;
}

/** What an agent's hello says about its drivers. */
export interface DriverDescription {
  /** The isolations offered (driver names). */
  drivers: string[];
  /** How the vm driver's VMs run, when it is one of them. */
  vm_accel?: 'kvm' | 'tcg';
}

export interface ComputerDriver {
  readonly name: string;
  /** For the hello; without it, the driver's name is all there is to say. */
  describe?(): Promise<DriverDescription>;
  /** Makes sure the base template exists (builds it on first use, reporting progress). */
  prepare(onProgress: ProgressFn): Promise<void>;
  /** Builds the computer's disk (from the template, another computer's disk, or a snapshot on this host) and boots it. */
  provision(spec: ComputerSpec, cloneFrom: string | undefined, onProgress: ProgressFn, fromSnapshot?: string): Promise<void>;
  /** Boots a provisioned computer with the spec's limits and environment. */
  start(spec: ComputerSpec): Promise<void>;
  /** Ends every process of the computer; its disk stays. */
  stop(id: string): Promise<void>;
  /** Stops the computer keeping its memory, so the next start resumes it where it was (drivers that can). */
  suspend?(id: string): Promise<void>;
  /** Stops the computer and removes its disk. */
  destroy(id: string): Promise<void>;
  /** Applies the spec's size limits (to the running computer and to its next boots). */
  resize(spec: ComputerSpec): Promise<void>;
  /** Replaces the environment new processes get, without a reboot. */
  setEnv(id: string, env: Record<string, string>): Promise<void>;
  /** Runs a command to completion inside the running computer. */
  exec(id: string, params: ExecRunParams): Promise<ExecRunResult>;
  /** Starts a streamed process in the running computer. */
  spawn(id: string, params: ProcStartParams, window: number): Promise<StreamProcess>;
  /** One file operation in the running computer, done by its guest as `user` (schema/guest.ts FsRequest). */
  fs(id: string, request: FsRequest): Promise<FsAnswer>;
  /**
   * Starts a watch of what happens inside the running computer (process, file, idle events);
   * `onEvents` hears its batches until `stop()` or the computer stops.
   */
  watch(id: string, watchId: string, producers: WatchProducers, onEvents: (events: ComputerEvent[]) => void): Promise<WatchHandle>;
  /** Re-subscribes to a streamed process, replaying output from `offsets`; null when the computer no longer has it. */
  attach(id: string, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null>;
  /**
   * A TCP connection to `port` inside the running computer (its guest connects
   * within the computer's network), half-open capable. Rejects with a
   * RelayTargetError: `refused` when nothing listens, `unreachable` when the
   * computer is not running, `unsupported` when its guest cannot relay.
   */
  connectTcp(id: string, port: number): Promise<Duplex>;
  /**
   * A file's bytes in the running computer as a stream (schema/guest.ts FileStream): read, write,
   * pack or unpack, done by its guest as `user`. Rejects with a RelayTargetError like connectTcp.
   */
  openFile?(id: string, request: FileStream): Promise<Duplex>;
  /** Current CPU and memory use of a running computer, null when it is not running. */
  metrics(id: string): Promise<ComputerMetrics | null>;
  /** What the host actually has for this computer. */
  state(id: string): Promise<ActualState>;
  /** The file of the computer's system log on this host (boot, init, guest agent, driver notes), for the agent to ship; null when there is none. */
  systemLog?(id: string): string | null;
  /** Adds a line to the computer's system log. */
  logLine?(id: string, line: string): void;
  /** The running computer's address inside its own network (shown as `ip_address`); null when it has none. Drivers without networks of their own leave it out. */
  address?(id: string): Promise<string | null>;
  /** Ids of every computer with a disk on this host. */
  list(): Promise<string[]>;
  /**
   * Snapshots (protocol 1.6): a point-in-time copy of the computer's disk kept on this host under
   * `name` (a running computer's file system frozen for the copy); its size on the host's disk.
   */
  snapshotDisk?(id: string, name: string): Promise<{ bytes: number }>;
  /** Makes the stopped computer's disk a copy of snapshot `name` (which stays). */
  restoreDisk?(id: string, name: string): Promise<void>;
  /** Removes snapshot `name`; gone already is fine. */
  deleteSnapshot?(name: string): Promise<void>;
  /** The snapshots on this host, with when each was made (ms since the epoch). */
  listSnapshots?(): Promise<{ name: string; created_ms: number }[]>;
  /** Reads a stopped computer's disk out as one archive, keeping owners, modes, xattrs and overlay whiteouts. */
  exportDisk(id: string): Promise<DiskExport>;
  /** Starts receiving the disk archive of `spec.id` (made by another host's exportDisk); the disk exists once commit() is done. */
  importDisk(spec: ComputerSpec, onProgress: ProgressFn): Promise<DiskImport>;
  /** Called when a running computer dies on its own (init exited, killed). */
  onExit(listener: (id: string, reason: string) => void): void;
  /** Releases resources of the driver itself (guest connections); computers keep running. */
  close(): Promise<void>;
}

/** Thrown by drivers; `code` maps onto the protocol's AgentErrorCode. */
export class DriverError extends Error {
  // Declared as a field, not a parameter property: Node's type stripping cannot erase those.
  readonly code: AgentErrorCode;
  /** For the agent's log only, never sent to the server: what the computer's own agent said. */
  readonly detail?: string;
  constructor(code: AgentErrorCode, message: string, detail?: string) {
    super(message);
    this.code = code;
    this.detail = detail;
  }
}
