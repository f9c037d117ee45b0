/**
 * The wire protocol between the Durable Objects and host-agent.
 *
 * Two kinds of WebSocket, both dialed by the agent:
 *  - the host socket (HostObject): hello/welcome, heartbeats, and "attach"
 *    orders telling the agent which computers it serves;
 *  - one computer socket per computer (ComputerObject): lifecycle and exec
 *    requests, each with an `id` answered by exactly one `result`.
 * Every message is JSON validated with these schemas on both ends: the agent
 * is a remote process, not trusted code, and the server is remote to the agent.
 *
 * Versions (major changes break old agents; minor ones only add):
 *  - 1.0  hello/welcome, attach/detach, computer lifecycle, sync exec, metrics.
 *  - 1.1  streamed processes (proc.*): start, attach after a reconnect, stdin,
 *         resize, signal; output and stdin travel as binary frames (see
 *         BINARY FRAMES below) with byte offsets, and output is acknowledged
 *         by offset so the agent never holds more than a window of it.
 *  - 1.2  moving a stopped computer between hosts: computer.export (source) streams
 *         the disk as binary disk frames, relayed by the ComputerObject to the
 *         target's computer.import; disk.ack flows back (target -> object ->
 *         source) so at most a window is in flight; computer.import_done
 *         verifies bytes and sha256 and puts the disk in place.
 *  - 1.3  (robust) proc.start `output_limit`: each stream sends at most that
 *         many bytes (sync exec keeps no more), the rest is read and dropped
 *         in the computer, and the exit says `truncated`. procs.forget: the
 *         server has what it needs of these ended processes and the agent
 *         may drop them, in one notice for many (older servers send a
 *         proc.forget request for each). proc.start `wait_exit_ms`: a process
 *         that ends within that long is answered with its `exit` and no
 *         proc.exit follows; its output comes in the answer too (`output`,
 *         up to 64 KiB) or, past that, in frames sent before it.
 *  - 1.4  relayed byte streams (schema/relay.ts): relay.open/accept/response/
 *         credit/close/reset messages and binary relay frames (kind 4), on
 *         computer sockets (computer_tcp targets) and host sockets (host_tcp).
 *  - 1.5  host mode (OpenComputers): a tenant's machine runs the agent itself;
 *         its host socket carries a host-mode hello (OS, arch, user, faults),
 *         proc.* as on a computer socket, fs.* requests, secrets.set; agents
 *         ask AGENT_WHOAMI_PATH which mode their key is for.
 *  - 1.6  (files, events, logs, snapshots) the result of a boot (provision,
 *         start) carries the computer's `ip_address`; `fs` runs one file
 *         operation in the computer (schema/guest.ts FsRequest), failing with
 *         NO_SUCH_PATH, FORBIDDEN, CONFLICT or NO_SPACE for what the path says;
 *         watch.start / watch.stop and `watch.events`: process, file and idle
 *         events from inside the computer, for its events sockets; the
 *         computer's system log shipped as `log.lines` from the offset the
 *         object asks for (`log.follow`), acknowledged by `log.ack`;
 *         snapshots: computer.snapshot copies the computer's disk (a running
 *         one frozen for the copy) under a snapshot id, computer.snapshot_restore
 *         puts a snapshot back as a stopped computer's disk, computer.provision
 *         may start from a snapshot (`snapshot_id`) instead of the template;
 *         the host socket's `snapshot.delete` order removes one, and the
 *         welcome lists the snapshots the host keeps (others are removed).
 *  - 1.7  computers as microVMs: the spec says which driver makes a computer
 *         (`isolation`; absent: the agent's first driver), and the hello says
 *         which accelerator the agent's VMs run on (`vm_accel`); computer.stop
 *         may keep the computer's memory (`keep_memory`: its next start resumes it).
 *  - 1.9  inference clusters (schema/protocol-models.ts), tenant host sockets:
 *         models.serve / models.unserve requests, models.status reports.
 */
import { z } from 'zod';
import { SIZE_NAMES } from './sizes.ts';
import { ISOLATIONS } from './isolation.ts';
import { MODELS_RESULT_SCHEMAS, type ModelsRequest } from './protocol-models.ts';
import { ComputerEvent, FS_RESPONSES, FsRequest, WATCH_BATCH_MAX, WatchId, WatchProducers, WatchStarted } from './guest.ts';
import { EXEC_MAX_COMMAND_BYTES, envOverLimits } from './api.ts';

/** A string of at most `max` UTF-8 bytes. */
const Bytes = (max: number) => z.string().refine((s) => new TextEncoder().encode(s).byteLength <= max, `must be at most ${max} bytes`);

/**
 * Every request bounds what it carries, on both ends: an agent refuses what
 * the computer's agent could not take (schema/guest.ts caps a frame's header
 * at 1 MiB) with a clear error, instead of failing later on its own.
 */
/** A computer's environment: the limits tenants get at the API (schema/api.ts ENV_LIMITS). */
const ComputerEnv = z.record(z.string(), z.string()).superRefine((env, ctx) => {
  const over = envOverLimits(env);
  if (over) ctx.addIssue({ code: 'custom', message: `environment over the limits: ${over}` });
});
/** Extra environment of one process (exec sockets' env=KEY=VALUE). */
const ProcEnv = z
  .record(z.string(), z.string())
  .refine((env) => Object.keys(env).length <= 1024, 'at most 1024 variables')
  .refine((env) => Object.entries(env).reduce((n, [k, v]) => n + k.length + v.length, 0) <= 256 * 1024, 'at most 256 KiB of names and values');
const Path = Bytes(4096);

export const PROTOCOL = { major: 1, minor: 7 } as const;

/** The first minor version whose agents serve relayed streams. */
export const RELAY_MINOR = 4;

/** True when an agent reporting `v` speaks at least `major.minor` (same major). */
export const speaks = (v: { major: number; minor: number }, minor: number): boolean => v.major === PROTOCOL.major && v.minor >= minor;

const Version = z.object({ major: z.number().int().nonnegative(), minor: z.number().int().nonnegative() });
const Uuid = z.uuid();

/** What the agent needs to build and boot a computer. Env values arrive decrypted. */
export const ComputerSpec = z.object({
  id: Uuid,
  name: z.string(),
  template: z.string(),
  size: z.enum(SIZE_NAMES),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  /**
   * The disk quota in GiB. Absent from control planes that predate disk quotas: the agent then
   * uses the size's default (SIZES). A disk grows when this grows and never shrinks.
   */
  disk_gb: z.number().int().positive().max(65_536).optional(),
  selected_apps: z.array(z.string().max(64)).max(16),
  env: ComputerEnv,
  /** 1.7: the driver that makes this computer; absent means the agent's first. */
  isolation: z.enum(ISOLATIONS).optional(),
});
export type ComputerSpec = z.infer<typeof ComputerSpec>;

/** A computer's state as the agent sees it on its disk and in its process table. */
export const ActualState = z.enum(['running', 'stopped', 'absent']);
export type ActualState = z.infer<typeof ActualState>;

// ---------------------------------------------------------------- host socket

export const AgentHello = z.object({
  type: z.literal('hello'),
  protocol: Version,
  agent_version: z.string().max(64),
  drivers: z.array(z.string().max(32)).max(8),
  hostname: z.string().max(255),
  cpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  computers: z.array(z.object({ id: Uuid, state: ActualState })).max(10_000),
  /** 1.7: how this agent's VMs run, decided by booting a probe VM (absent without the vm driver). */
  vm_accel: z.enum(['kvm', 'tcg']).optional(),
});

export const AgentHeartbeat = z.object({
  type: z.literal('heartbeat'),
  load1: z.number().nonnegative(),
  memory_used_mb: z.number().nonnegative(),
  computers_running: z.number().int().nonnegative(),
});

export const HostAgentMessage = z.discriminatedUnion('type', [AgentHello, AgentHeartbeat]);
export type HostAgentMessage = z.infer<typeof HostAgentMessage>;

export const Welcome = z.object({
  type: z.literal('welcome'),
  host_id: z.string(),
  protocol: Version,
  heartbeat_interval_ms: z.number().int().positive(),
  metrics_interval_ms: z.number().int().positive(),
  /** Computers this host serves; the agent opens a computer socket for each. */
  computers: z.array(Uuid),
  /** 1.6: the snapshots this host keeps; any other snapshot on its disks is removed. */
  snapshots: z.array(Uuid).optional(),
});

export const AttachOrder = z.object({ type: z.literal('computer.attach'), computer_id: Uuid });
export const DetachOrder = z.object({ type: z.literal('computer.detach'), computer_id: Uuid });
/** 1.6: removes a snapshot's copy of a disk from the host (gone already is fine). */
export const SnapshotDeleteOrder = z.object({ type: z.literal('snapshot.delete'), snapshot_id: Uuid });

export const HostServerMessage = z.discriminatedUnion('type', [Welcome, AttachOrder, DetachOrder, SnapshotDeleteOrder]);
export type HostServerMessage = z.infer<typeof HostServerMessage>;

// ------------------------------------------------------------ computer socket

const RequestId = z.string().min(1).max(64);

export const ExecRunParams = z.object({
  command: Bytes(EXEC_MAX_COMMAND_BYTES),
  timeout_s: z.number().int().positive().max(300),
  cwd: Path.optional(),
  env: ProcEnv.optional(),
  /** Written to the process's stdin, which is then closed; absent means /dev/null. */
  stdin: Bytes(1024 * 1024).optional(),
  /** Output beyond this many bytes is dropped and the result says `truncated`. */
  max_output_bytes: z.number().int().positive(),
});
export type ExecRunParams = z.infer<typeof ExecRunParams>;

export const ExecRunResult = z.object({
  output: z.string(),
  exit_code: z.number().int(),
  timed_out: z.boolean(),
  truncated: z.boolean(),
  duration_ms: z.number().nonnegative(),
});
export type ExecRunResult = z.infer<typeof ExecRunResult>;

export const LifecycleResult = z.object({
  state: ActualState,
  /** 1.6: after a boot, the computer's address inside its own network (null when it has none). */
  ip_address: z.union([z.ipv4(), z.ipv6()]).nullable().optional(),
});

// ------------------------------------------------------------ streamed processes (1.1)

/** Chosen by the ComputerObject; short and boring because it travels in every binary frame. */
export const ProcId = z.string().regex(/^[a-z0-9]{1,32}$/);
export const OUTPUT_STREAMS = ['stdout', 'stderr', 'pty'] as const;
export const OutputStream = z.enum(OUTPUT_STREAMS);
export type OutputStream = z.infer<typeof OutputStream>;
export const StreamOffsets = z.partialRecord(OutputStream, z.number().int().nonnegative());
export type StreamOffsets = z.infer<typeof StreamOffsets>;
const TermSize = z.number().int().min(1).max(1000);
export const ProcSignal = z.enum(['TERM', 'KILL', 'INT', 'HUP']);
export type ProcSignal = z.infer<typeof ProcSignal>;

export const ProcStartParams = z.object({
  proc_id: ProcId,
  /** Exactly one: a command for `shell -c`, or an argv run as is. */
  command: Bytes(EXEC_MAX_COMMAND_BYTES).optional(),
  argv: z
    .array(z.string())
    .min(1)
    .max(4096)
    .refine((a) => a.reduce((n, x) => n + x.length, 0) <= 256 * 1024, 'at most 256 KiB of arguments')
    .optional(),
  /** Absolute path of the shell (default /bin/bash); it must exist in the computer. With argv, argv[0] is run and this is only checked. */
  shell: Path.optional(),
  /** A real terminal: output is one `pty` stream. */
  tty: z.object({ rows: TermSize, cols: TermSize }).optional(),
  cwd: Path.optional(),
  env: ProcEnv.optional(),
  /** Killed (TERM, then KILL) after this many seconds; absent means never. */
  timeout_s: z.number().int().positive().optional(),
  /** Keep stdin open for proc stdin frames; otherwise it is /dev/null. */
  stdin: z.boolean(),
  /** 1.3: at most this many bytes of each stream are sent; the rest is dropped in the computer and the exit says `truncated`. */
  output_limit: z.number().int().nonnegative().optional(),
  /** 1.3: answer once the process has ended, if it does within this many ms (the result then has its `exit`). */
  wait_exit_ms: z.number().int().positive().max(10_000).optional(),
});
export type ProcStartParams = z.infer<typeof ProcStartParams>;

export const ProcExit = z.object({
  exit_code: z.number().int(),
  signal: z.number().int().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number().nonnegative(),
  /** 1.3: output past the start's `output_limit` was dropped. */
  truncated: z.boolean().optional(),
});
export type ProcExit = z.infer<typeof ProcExit>;

/** What the host has for a process after a reconnect. */
export const ProcAttachResult = z.object({ running: z.boolean(), exit: ProcExit.nullable() });
export type ProcAttachResult = z.infer<typeof ProcAttachResult>;
export type LifecycleResult = z.infer<typeof LifecycleResult>;

// ------------------------------------------------------------ moving a disk (1.2)

/** Names one disk transfer; chosen by the ComputerObject, carried in every disk frame. */
export const TransferId = z.string().regex(/^[a-z0-9]{1,32}$/);
const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
/** What the source read and the target must have received: the archive's length and digest. */
export const DiskDigest = z.object({ bytes: z.number().int().nonnegative(), sha256: Sha256Hex });
export type DiskDigest = z.infer<typeof DiskDigest>;

/** Requests about streamed processes: the same on a computer socket and on a host-mode agent's host socket (1.5). */
const PROC_REQUESTS = [
  z.object({ type: z.literal('proc.start'), id: RequestId, params: ProcStartParams }),
  z.object({ type: z.literal('proc.attach'), id: RequestId, proc_id: ProcId, offsets: StreamOffsets }),
  z.object({ type: z.literal('proc.resize'), id: RequestId, proc_id: ProcId, rows: TermSize, cols: TermSize }),
  z.object({ type: z.literal('proc.signal'), id: RequestId, proc_id: ProcId, signal: ProcSignal }),
  z.object({ type: z.literal('proc.close_stdin'), id: RequestId, proc_id: ProcId }),
  z.object({ type: z.literal('proc.forget'), id: RequestId, proc_id: ProcId }),
] as const;

/** Requests the ComputerObject sends; each is answered by one `result` with the same id. */
export const ComputerRequest = z.discriminatedUnion('type', [
  /** `snapshot_id` (1.6): the new disk is a copy of that snapshot (on this host) rather than the template's. */
  z.object({ type: z.literal('computer.provision'), id: RequestId, spec: ComputerSpec, clone_from: Uuid.optional(), snapshot_id: Uuid.optional() }),
  z.object({ type: z.literal('computer.start'), id: RequestId, spec: ComputerSpec }),
  /** 1.7: `keep_memory` saves the computer's memory (a VM) so the next start resumes it where it was. */
  z.object({ type: z.literal('computer.stop'), id: RequestId, keep_memory: z.boolean().optional() }),
  z.object({ type: z.literal('computer.destroy'), id: RequestId }),
  z.object({ type: z.literal('computer.resize'), id: RequestId, spec: ComputerSpec }),
  z.object({ type: z.literal('computer.env'), id: RequestId, env: ComputerEnv }),
  z.object({ type: z.literal('exec.run'), id: RequestId, params: ExecRunParams }),
  ...PROC_REQUESTS,
  /** Source: stream the stopped computer's disk as disk frames; the result is the archive's digest. */
  z.object({ type: z.literal('computer.export'), id: RequestId, transfer_id: TransferId }),
  /** Target: get ready to receive the disk frames of this transfer. */
  z.object({ type: z.literal('computer.import'), id: RequestId, transfer_id: TransferId, spec: ComputerSpec }),
  /** Target: every frame has been relayed; verify against the digest and put the disk in place (stopped). */
  z.object({ type: z.literal('computer.import_done'), id: RequestId, transfer_id: TransferId, spec: ComputerSpec }).extend(DiskDigest.shape),
  /** 1.6: one file operation in the running computer. */
  z.object({ type: z.literal('fs'), id: RequestId, request: FsRequest }),
  /** 1.6: starts (or restarts) a watch; its events come as `watch.events` until watch.stop or the computer stops. */
  z.object({ type: z.literal('watch.start'), id: RequestId, watch_id: WatchId, producers: WatchProducers }),
  z.object({ type: z.literal('watch.stop'), id: RequestId, watch_id: WatchId }),
  /** 1.6: copies the computer's disk as snapshot `snapshot_id` (a running computer's file system frozen for the copy). */
  z.object({ type: z.literal('computer.snapshot'), id: RequestId, snapshot_id: Uuid }),
  /** 1.6: the stopped computer's disk becomes a copy of snapshot `snapshot_id` (which stays). */
  z.object({ type: z.literal('computer.snapshot_restore'), id: RequestId, snapshot_id: Uuid }),
]);
export type ComputerRequest = z.infer<typeof ComputerRequest>;
export type ComputerRequestType = ComputerRequest['type'];

/** Output of a short process the agent puts in the answer to its start (wait_exit_ms) rather than in frames, at most. */
export const INLINE_OUTPUT_BYTES = 64 * 1024;

/** Result schema for each request type, checked by the ComputerObject on arrival. */
export const RESULT_SCHEMAS = {
  'computer.provision': LifecycleResult,
  'computer.start': LifecycleResult,
  'computer.stop': LifecycleResult,
  'computer.destroy': LifecycleResult,
  'computer.resize': LifecycleResult,
  'computer.env': LifecycleResult,
  'exec.run': ExecRunResult,
  'proc.start': z.object({
    pid: z.number().int(),
    exit: ProcExit.optional(),
    /** With `exit`: the process's output, in order, when it came to at most INLINE_OUTPUT_BYTES (base64 of the bytes). */
    output: z
      .array(z.object({ stream: OutputStream, offset: z.number().int().nonnegative(), data: z.string().max(Math.ceil(INLINE_OUTPUT_BYTES / 3) * 4) }))
      .max(1024)
      .optional(),
  }),
  'proc.attach': ProcAttachResult,
  'proc.resize': z.object({}),
  'proc.signal': z.object({}),
  'proc.close_stdin': z.object({}),
  'proc.forget': z.object({}),
  'computer.export': DiskDigest,
  'computer.import': z.object({}),
  'computer.import_done': LifecycleResult,
  fs: z.union([FS_RESPONSES.list, FS_RESPONSES.stat, FS_RESPONSES.delete, FS_RESPONSES.unpack]),
  'watch.start': WatchStarted,
  'watch.stop': z.object({}),
  /** The snapshot's size on the host's disk (its blocks; shared ones counted). */
  'computer.snapshot': z.object({ bytes: z.number().int().nonnegative() }),
  'computer.snapshot_restore': LifecycleResult,
} as const satisfies Record<ComputerRequestType, z.ZodType>;

/**
 * Errors an agent answers with. 1.5 (files on a tenant host) and 1.6 (files in
 * a computer) add the path's codes: not there, refused (PERMISSION_DENIED is a
 * host-mode agent's word for FORBIDDEN), in conflict with what is there, too
 * large, no space left.
 */
export const AgentErrorCode = z.enum([
  'NOT_RUNNING',
  'NOT_FOUND',
  'BAD_REQUEST',
  'FAILED',
  'NO_SUCH_PATH',
  'FORBIDDEN',
  'PERMISSION_DENIED',
  'CONFLICT',
  'TOO_LARGE',
  'NO_SPACE',
]);
export type AgentErrorCode = z.infer<typeof AgentErrorCode>;

/** The server has taken a process's output up to these offsets; the agent may send that much more beyond them. */
export const ProcAck = z.object({ type: z.literal('proc.ack'), proc_id: ProcId, offsets: StreamOffsets });

/**
 * Disk bytes of a transfer written up to `offset`: the target says it to the
 * object, and the object passes it on to the source, whose credit it is.
 */
export const DiskAck = z.object({ type: z.literal('disk.ack'), transfer_id: TransferId, offset: z.number().int().nonnegative() });

/**
 * The move is off. From the object: the source stops reading its disk, the
 * target drops what it received. From the target: it cannot take the disk
 * (its writes failed), so the object ends the transfer now rather than wait.
 */
export const DiskCancel = z.object({ type: z.literal('disk.cancel'), transfer_id: TransferId, reason: z.string().max(1024).optional() });

/** 1.3: the server has what it needs of these ended processes; the agent may forget them (no answer is sent). */
export const ProcsForget = z.object({ type: z.literal('procs.forget'), proc_ids: z.array(ProcId).min(1).max(256) });

/** 1.6: the object has the computer's system log up to `offset`: ship what follows (sent after each `attached`). */
export const LogFollow = z.object({ type: z.literal('log.follow'), offset: z.number().int().nonnegative() });
/** 1.6: the object stored the system log up to `offset`; the agent may send that much more beyond it. */
export const LogAck = z.object({ type: z.literal('log.ack'), offset: z.number().int().nonnegative() });

/** Messages the ComputerObject sends that need no answer. */
export const ComputerNotice = z.discriminatedUnion('type', [ProcAck, DiskAck, DiskCancel, ProcsForget, LogFollow, LogAck]);
export type ComputerNotice = z.infer<typeof ComputerNotice>;

/** System log bytes the agent may send beyond what the object acknowledged, and per message at most. */
export const LOG_WINDOW_BYTES = 256 * 1024;
export const LOG_CHUNK_BYTES = 64 * 1024;

/** Bytes of unacknowledged output the agent may have in flight per process. */
export const OUTPUT_WINDOW_BYTES = 2 * 1024 * 1024;

/** Disk bytes a source may have sent beyond what the target acknowledged; the object refuses more. */
export const DISK_WINDOW_BYTES = 4 * 1024 * 1024;
/** Payload of one disk frame at most (a Workers WebSocket message is at most 1 MiB). */
export const DISK_FRAME_BYTES = 256 * 1024;

export const ResultMessage = z.discriminatedUnion('ok', [
  z.object({ type: z.literal('result'), id: RequestId, ok: z.literal(true), data: z.unknown() }),
  z.object({
    type: z.literal('result'),
    id: RequestId,
    ok: z.literal(false),
    error: z.object({ code: AgentErrorCode, message: z.string().max(4096) }),
  }),
]);

export const Attached = z.object({
  type: z.literal('attached'),
  computer_id: Uuid,
  protocol: Version,
  agent_version: z.string().max(64),
  state: ActualState,
});

export const MetricsSample = z.object({
  type: z.literal('metrics'),
  ts: z.number().int().positive(),
  cpu_percent: z.number().nonnegative(),
  memory_percent: z.number().nonnegative(),
  memory_bytes: z.number().nonnegative(),
  /** Disk in use (agents with disk quotas; absent from older agents). */
  disk_bytes: z.number().nonnegative().optional(),
  disk_percent: z.number().nonnegative().optional(),
});

/** The computer stopped without being asked (its init died, it ran out of memory). */
export const ComputerExited = z.object({ type: z.literal('computer.exited'), reason: z.string().max(1024) });

export const ProcExited = z.object({ type: z.literal('proc.exit'), proc_id: ProcId }).extend(ProcExit.shape);

/** Stdin bytes written to the process so far (the server's credit for sending more). */
export const ProcStdinAck = z.object({ type: z.literal('proc.stdin_ack'), proc_id: ProcId, offset: z.number().int().nonnegative() });

/**
 * 1.6: system log text from byte `offset` of the computer's log on its host, in whole lines (a
 * line longer than a message is cut). `restart`: the host's log is not the one the object followed
 * (the computer moved, or the log was cut), and this is its beginning.
 */
export const LogLines = z.object({
  type: z.literal('log.lines'),
  offset: z.number().int().nonnegative(),
  /** The log bytes this covers (text is them decoded: invalid UTF-8 became U+FFFD). */
  bytes: z.number().int().positive().max(LOG_CHUNK_BYTES),
  text: z.string().max(LOG_CHUNK_BYTES),
  restart: z.boolean().optional(),
});

/** 1.6: events of a watch, in order. */
export const WatchEvents = z.object({ type: z.literal('watch.events'), watch_id: WatchId, events: z.array(ComputerEvent).max(WATCH_BATCH_MAX) });

export const ComputerAgentMessage = z.union([ResultMessage, Attached, MetricsSample, ComputerExited, ProcExited, ProcStdinAck, DiskAck, DiskCancel, WatchEvents, LogLines]);
export type ComputerAgentMessage = z.infer<typeof ComputerAgentMessage>;

/** Each agent message's schema by its type: a message is checked against its own schema only (the hot path's cost). */
const AGENT_MESSAGE_SCHEMAS: Record<ComputerAgentMessage['type'], z.ZodType<ComputerAgentMessage>> = {
  result: ResultMessage,
  attached: Attached,
  metrics: MetricsSample,
  'computer.exited': ComputerExited,
  'proc.exit': ProcExited,
  'proc.stdin_ack': ProcStdinAck,
  'disk.ack': DiskAck,
  'disk.cancel': DiskCancel,
  'watch.events': WatchEvents,
  'log.lines': LogLines,
};

/** Checks a message from an agent (parsed JSON); null when it is not one of the protocol's. */
export function parseAgentMessage(raw: unknown): ComputerAgentMessage | null {
  const type = (raw as { type?: unknown } | null)?.type;
  const schema = typeof type === 'string' && Object.hasOwn(AGENT_MESSAGE_SCHEMAS, type) ? AGENT_MESSAGE_SCHEMAS[type as ComputerAgentMessage['type']] : null;
  const r = schema?.safeParse(raw);
  return r?.success ? r.data : null;
}

// ------------------------------------------------------------ host mode (1.5)
//
// A tenant's own machine (OpenComputers) runs the same agent in host mode: it
// dials the host socket and serves the machine itself, as the user who runs
// it. Its HostObject plays the part a ComputerObject plays for a computer: the
// same proc.* requests, output and stdin frames, acks and exits travel on the
// host socket, plus host-only requests (files) and notices (secrets).

/** GET with the host key: the kind of host the key belongs to, so the agent knows its mode before it dials. */
export const AGENT_WHOAMI_PATH = '/agent/v1/whoami';
export const WhoAmI = z.object({ host_id: Uuid, kind: z.enum(['fleet', 'byo']), name: z.string() });
export type WhoAmI = z.infer<typeof WhoAmI>;

export const HostModeHello = z.object({
  type: z.literal('hello'),
  mode: z.literal('host'),
  protocol: Version,
  agent_version: z.string().max(64),
  hostname: z.string().max(255),
  /** Node's process.platform (linux, darwin, win32, freebsd…). */
  os: z.string().max(32),
  os_release: z.string().max(255),
  arch: z.string().max(32),
  cpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  node_version: z.string().max(32),
  user: z.object({ name: z.string().max(255), home: z.string().max(4096), shell: z.string().max(4096).nullable() }),
  /** File access is confined to this tree (the agent's --fs-root); null: wherever the user's permissions reach. */
  fs_root: z.string().max(4096).nullable(),
  /** The agent can make a PTY here (terminals). */
  terminal: z.boolean(),
  /** Processes the agent still has (running, or ended and not forgotten); the server ends the ones it no longer knows. */
  procs: z.array(ProcId).max(10_000),
  /** A preflight check failed and the agent cannot serve: the host shows status `error` with this reason. */
  fault: z.string().max(1024).nullable(),
});
export type HostModeHello = z.infer<typeof HostModeHello>;

/**
 * Every secret of the host (the tenant's and its own, the host's winning a
 * clash): the agent keeps them in memory, never on disk, and gives them to
 * every process it starts. Sent after the welcome and whenever one changes.
 */
export const SecretsSet = z.object({ type: z.literal('secrets.set'), env: z.record(z.string(), z.string()) });

/** A directory entry or a stat result on a tenant host; times ISO 8601 UTC. */
export const FsEntry = z.object({
  name: z.string(),
  path: z.string(),
  size: z.number().nonnegative(),
  is_dir: z.boolean(),
  modified_at: z.string(),
  mode: z.number().int().nonnegative(),
  is_symlink: z.boolean(),
  symlink_target: z.string().nullable(),
});
export type FsEntry = z.infer<typeof FsEntry>;
const HostPathParam = z.string().min(1).max(4096);

/** Requests a HostObject sends a host-mode agent; each is answered by one `result`. */
export const HostRequest = z.discriminatedUnion('type', [
  ...PROC_REQUESTS,
  /** Paths are absolute or relative to the user's home; the agent resolves (and confines) them. */
  z.object({ type: z.literal('fs.list'), id: RequestId, path: HostPathParam }),
  z.object({ type: z.literal('fs.stat'), id: RequestId, path: HostPathParam }),
  z.object({ type: z.literal('fs.mkdir'), id: RequestId, path: HostPathParam }),
  z.object({ type: z.literal('fs.delete'), id: RequestId, path: HostPathParam, recursive: z.boolean() }),
  /**
   * Before a file travels over a relay stream (host_file): checks that it can
   * be read (mode read: it exists, is a file, the user may read it), or written
   * (mode write: missing parents are made; an existing directory takes the
   * file under `filename`), and answers the absolute path and current size.
   */
  z.object({ type: z.literal('fs.prepare'), id: RequestId, path: HostPathParam, mode: z.enum(['read', 'write']), filename: z.string().min(1).max(255).optional() }),
]);
export type HostRequest = z.infer<typeof HostRequest>;
export type HostRequestType = HostRequest['type'];

export const HOST_RESULT_SCHEMAS = {
  'proc.start': RESULT_SCHEMAS['proc.start'],
  'proc.attach': RESULT_SCHEMAS['proc.attach'],
  'proc.resize': RESULT_SCHEMAS['proc.resize'],
  'proc.signal': RESULT_SCHEMAS['proc.signal'],
  'proc.close_stdin': RESULT_SCHEMAS['proc.close_stdin'],
  'proc.forget': RESULT_SCHEMAS['proc.forget'],
  /** A listing stops short (truncated) rather than exceed what one message carries. */
  'fs.list': z.object({ path: z.string(), entries: z.array(FsEntry), truncated: z.boolean() }),
  'fs.stat': FsEntry,
  'fs.mkdir': z.object({ path: z.string() }),
  'fs.delete': z.object({ path: z.string() }),
  'fs.prepare': z.object({ path: z.string(), size: z.number().int().nonnegative(), modified_at: z.string().nullable() }),
} as const satisfies Record<HostRequestType, z.ZodType>;

/** Any request a Durable Object sends an agent, and each one's result schema. */
export type AgentRequest = ComputerRequest | HostRequest | ModelsRequest;
export type AgentRequestType = AgentRequest['type'];
export const AGENT_RESULT_SCHEMAS = { ...RESULT_SCHEMAS, ...HOST_RESULT_SCHEMAS, ...MODELS_RESULT_SCHEMAS } as const satisfies Record<AgentRequestType, z.ZodType>;

/** Messages a HostObject sends a host-mode agent that need no answer. */
export const HostModeNotice = z.discriminatedUnion('type', [ProcAck, SecretsSet, ProcsForget]);
export type HostModeNotice = z.infer<typeof HostModeNotice>;

/** What a host-mode agent sends on its host socket. */
export const HostModeAgentMessage = z.union([HostModeHello, AgentHeartbeat, ResultMessage, ProcExited, ProcStdinAck]);
export type HostModeAgentMessage = z.infer<typeof HostModeAgentMessage>;

/** Path the agent dials for a computer socket; the host socket is AGENT_HOST_PATH. */
export const AGENT_HOST_PATH = '/agent/v1/connect';
export const agentComputerPath = (computerId: string) => `/agent/v1/computers/${computerId}/connect`;

// ------------------------------------------------------------ binary frames (1.1, disk frames 1.2)
//
//   u8  kind      1 = output (agent -> server), 2 = stdin (server -> agent),
//                 3 = disk (source agent -> server -> target agent),
//                 4 = relay (either way; schema/relay.ts)
//   u8  stream    index in OUTPUT_STREAMS for output; flags for relay; 0 for stdin and disk
//   u8  id_len    length of the id
//   ..  id        ASCII: the proc id, or for disk frames the transfer id
//   f64 offset    big-endian: byte offset of the payload's first byte in its stream
//   ..  payload   the bytes

export const FRAME_OUTPUT = 1;
export const FRAME_STDIN = 2;
export const FRAME_DISK = 3;

export interface BinaryFrame {
  kind: typeof FRAME_OUTPUT | typeof FRAME_STDIN;
  stream: OutputStream;
  proc_id: string;
  offset: number;
  payload: Uint8Array;
}

/** A piece of a disk archive in transfer `transfer_id`, at byte `offset` of the archive. */
export interface DiskFrame {
  kind: typeof FRAME_DISK;
  transfer_id: string;
  offset: number;
  payload: Uint8Array;
}

/** Lays out a binary frame of any kind. */
export function packFrame(kind: number, stream: number, id: string, offset: number, payload: Uint8Array): Uint8Array {
  const head = frameHead(kind, stream, id, offset, payload.byteLength);
  head.set(payload, head.byteLength - payload.byteLength);
  return head;
}

/**
 * A frame's header alone (`u8 kind | u8 stream | u8 id_len | id | f64 offset`),
 * in a buffer with `room` bytes left after it for the payload: a sender that
 * can send the payload as a second piece of the same message (a fragmented
 * WebSocket message) passes 0 and never copies the payload.
 */
export function frameHead(kind: number, stream: number, id: string, offset: number, room = 0): Uint8Array {
  const idBytes = new TextEncoder().encode(id);
  const out = new Uint8Array(3 + idBytes.length + 8 + room);
  out[0] = kind;
  out[1] = stream;
  out[2] = idBytes.length;
  out.set(idBytes, 3);
  new DataView(out.buffer, out.byteOffset + 3 + idBytes.length, 8).setFloat64(0, offset);
  return out;
}

/** The fields of any frame, or null when the header is malformed. */
export function unpackFrame(buf: Uint8Array): { kind: number; stream: number; id: string; offset: number; payload: Uint8Array } | null {
  if (buf.byteLength < 11) return null;
  const idLen = buf[2];
  if (buf.byteLength < 3 + idLen + 8) return null;
  const id = new TextDecoder().decode(buf.subarray(3, 3 + idLen));
  const offset = new DataView(buf.buffer, buf.byteOffset + 3 + idLen, 8).getFloat64(0);
  if (!Number.isSafeInteger(offset) || offset < 0) return null;
  return { kind: buf[0], stream: buf[1], id, offset, payload: buf.subarray(3 + idLen + 8) };
}

/** The kind byte of a binary message (0 when empty). */
export const frameKind = (buf: Uint8Array): number => (buf.byteLength > 0 ? buf[0] : 0);

export function encodeFrame(f: BinaryFrame): Uint8Array {
  return packFrame(f.kind, f.kind === FRAME_OUTPUT ? OUTPUT_STREAMS.indexOf(f.stream) : 0, f.proc_id, f.offset, f.payload);
}

/** Parses an output or stdin frame; null when it is malformed or another kind (the caller drops it and may close the socket). */
export function decodeFrame(buf: Uint8Array): BinaryFrame | null {
  const f = unpackFrame(buf);
  if (!f || (f.kind !== FRAME_OUTPUT && f.kind !== FRAME_STDIN)) return null;
  const stream = f.kind === FRAME_OUTPUT ? OUTPUT_STREAMS[f.stream] : 'stdout';
  if (!stream || !ProcId.safeParse(f.id).success) return null;
  return { kind: f.kind, stream, proc_id: f.id, offset: f.offset, payload: f.payload };
}

export function encodeDiskFrame(f: Omit<DiskFrame, 'kind'>): Uint8Array {
  return packFrame(FRAME_DISK, 0, f.transfer_id, f.offset, f.payload);
}

/** Parses a disk frame; null when it is malformed or another kind. */
export function decodeDiskFrame(buf: Uint8Array): DiskFrame | null {
  const f = unpackFrame(buf);
  if (!f || f.kind !== FRAME_DISK || !TransferId.safeParse(f.id).success) return null;
  return { kind: FRAME_DISK, transfer_id: f.id, offset: f.offset, payload: f.payload };
}
