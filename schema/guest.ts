/**
 * The guest protocol: host agent <-> guest agent (host-agent/guest/, the hangar_guest package)
 * running inside each computer.
 *
 * Transport: one byte stream (a unix socket for sandboxes; virtio-serial for
 * VMs). Every frame is
 *
 *     u32 BE header_len | u32 BE payload_len | header (UTF-8 JSON) | payload (raw bytes)
 *
 * so process output and stdin travel as raw bytes (no base64 on hot paths),
 * and requests carry ids so one connection multiplexes many operations.
 *
 * The guest speaks first with `hello`. The host sends `req` frames; each gets
 * exactly one `res` with the same id. The guest also sends `evt` frames
 * (process output and exits) to the connections subscribed to a process.
 * Spawned processes outlive the connection: after a reconnect the host lists
 * them and re-attaches from a byte offset (the guest keeps a bounded ring of
 * recent output per stream).
 *
 * Versions (major changes break old hosts; minor ones only add):
 *  - 1.0  hello, ping, setenv, exec; spawn/stdin/close_stdin/resize/signal/
 *         list/attach/ack/detach/forget with output/exit events.
 *  - 1.1  TCP connections inside the computer for the relay (see TCP below):
 *         tcp_open/tcp_send/tcp_ack/tcp_shutdown/tcp_close with
 *         tcp_data/tcp_end/tcp_closed events.
 *  - 1.2  spawn `output_limit`: each stream sends at most that many bytes, the
 *         rest is read and dropped, and the exit says `truncated`.
 *  - 1.3  (files) op fs: stat/list/mkdir/rename/copy/chmod/delete, done as `user`
 *         (as root when `user` is refused); error codes NO_SUCH_PATH,
 *         FORBIDDEN, CONFLICT, NO_SPACE for what a path's errno says;
 *         ops watch/unwatch with `watch` events: process, file and idle
 *         events of the computer (hangar_guest/watch.py); op file_open: a
 *         file's bytes as a connection of the TCP family (FileStream below).
 *  - 1.4  machine: a VM started from another VM's memory takes its own
 *         hostname, the host's clock and fresh entropy (reseeded at once).
 */
import { z } from 'zod';

export const GUEST_PROTOCOL = { major: 1, minor: 4 } as const;

/** The first guest minor version that makes TCP connections for the relay. */
export const GUEST_TCP_MINOR = 1;
/** The first guest minor version with files (fs, file_open) and watches. */
export const GUEST_FILES_MINOR = 3;

/** Largest header and payload a frame may carry; bigger ones are a protocol error. */
export const MAX_HEADER_BYTES = 1 << 20;
export const MAX_PAYLOAD_BYTES = 16 << 20;

const Env = z.record(z.string(), z.string());
const ProcId = z.string().min(1).max(32);
/** Who a process runs as: the computer's `user` (default) or root (the agent's own provisioning steps). */
const RunAs = z.enum(['user', 'root']);
const StreamName = z.enum(['stdout', 'stderr', 'pty']);
export type StreamName = z.infer<typeof StreamName>;
const Offsets = z.partialRecord(StreamName, z.number().int().nonnegative());
const OutputWindow = z.number().int().min(64 * 1024);

// ------------------------------------------------------------------ requests

export const ExecRequest = z.object({
  op: z.literal('exec'),
  command: z.string(),
  timeout_s: z.number().positive().max(3600),
  cwd: z.string().optional(),
  env: Env.optional(),
  max_output_bytes: z.number().int().positive(),
  user: RunAs.optional(),
  /** The frame's payload is written to the command's stdin, which is then closed; otherwise stdin is /dev/null. */
  stdin: z.boolean().optional(),
});

export const SpawnRequest = z.object({
  op: z.literal('spawn'),
  /** Chosen by the host so it can listen before any output arrives; must be unused. */
  proc: ProcId,
  /** Run through `<shell> -c`; exactly one of command/argv. */
  command: z.string().optional(),
  argv: z.array(z.string()).min(1).optional(),
  /** Absolute path of the shell for `command`; default /bin/bash. */
  shell: z.string().optional(),
  /** Keep a stdin pipe open for `stdin` requests (default); false gives /dev/null. Ignored with a pty. */
  stdin: z.boolean().optional(),
  /** A real terminal (stdout and stderr are one `pty` stream) instead of pipes. */
  pty: z.object({ rows: z.number().int().min(1).max(1000), cols: z.number().int().min(1).max(1000) }).optional(),
  cwd: z.string().optional(),
  env: Env.optional(),
  user: RunAs.optional(),
  timeout_s: z.number().positive().optional(),
  /** Bytes of recent output kept per stream for re-attaching. */
  ring_bytes: z.number().int().positive().max(16 << 20).optional(),
  /** Output flow control: at most this many bytes per stream sent beyond the host's last `ack`. */
  window: OutputWindow.optional(),
  /** At most this many bytes of each stream are sent (1.2); the rest is read and dropped, and the exit says `truncated`. */
  output_limit: z.number().int().nonnegative().optional(),
});

// ---------------------------------------------------------------- TCP (1.1)
//
// A connection the guest makes inside the computer to one of its ports, for
// the relay. Bytes to the app are `tcp_send` payloads, each answered once
// written into the socket (the host's credit: it keeps at most a window
// unanswered). Bytes from the app are `tcp_data` events at byte offsets, at
// most `window` beyond the host's last `tcp_ack`. `tcp_shutdown` is a FIN to
// the app after pending writes; `tcp_end` a FIN from it; `tcp_close` ends the
// connection (an RST with `reset`); `tcp_closed` says it is gone, with the
// error when it failed.

const ConnId = z.string().regex(/^[a-z0-9]{1,32}$/);
const TcpWindow = z.number().int().min(16 * 1024).max(16 << 20);

export const TcpOpenRequest = z.object({ op: z.literal('tcp_open'), conn: ConnId, port: z.number().int().min(1).max(65535), window: TcpWindow });

// ------------------------------------------------------------------ files (1.2)

/** A path in the computer: absolute, or relative to `user`'s home (`~` too). */
export const FsPath = z.string().min(1).max(4096).refine((p) => !p.includes('\0'), 'must not contain NUL');
/** Permission bits, 0 to 0o7777 (the API takes them as an octal string). */
export const FsMode = z.number().int().min(0).max(0o7777);

/** The file operations (the guest's op `fs` carries one as `request`). */
export const FsRequest = z.discriminatedUnion('op', [
  /** lstat; with `follow`, of what a symlink points to (what a download reads). */
  z.object({ op: z.literal('stat'), path: FsPath, follow: z.boolean().optional() }),
  /** Entries sorted by name after `after`, as many as fit one reply; `truncated` says more follow. */
  z.object({ op: z.literal('list'), path: FsPath, after: z.string().max(4096).optional() }),
  z.object({ op: z.literal('mkdir'), path: FsPath, recursive: z.boolean(), mode: FsMode }),
  /** The parent of `to` is created. */
  z.object({ op: z.literal('rename'), from: FsPath, to: FsPath }),
  z.object({ op: z.literal('copy'), from: FsPath, to: FsPath, recursive: z.boolean() }),
  z.object({ op: z.literal('chmod'), path: FsPath, mode: FsMode }),
  z.object({ op: z.literal('delete'), path: FsPath, recursive: z.boolean() }),
  /** Unpacks an archive that is already a file in the computer (an upload staged there) into the directory `path`. */
  z.object({ op: z.literal('unpack'), path: FsPath, source: FsPath, format: z.enum(['auto', 'tar', 'tar.gz', 'zip']) }),
]);
export type FsRequest = z.infer<typeof FsRequest>;
export type FsOp = FsRequest['op'];

/** lstat of a path: `mode` keeps the file-type bits; times in seconds since the epoch. */
export const FsStat = z.object({
  path: z.string(),
  size: z.number().int().nonnegative(),
  mode: z.number().int().nonnegative(),
  is_dir: z.boolean(),
  is_symlink: z.boolean(),
  symlink_target: z.string().optional(),
  modified_at: z.number(),
  uid: z.number().int(),
  gid: z.number().int(),
});
export type FsStat = z.infer<typeof FsStat>;

export const FsEntry = z.object({
  name: z.string(),
  path: z.string(),
  size: z.number().int().nonnegative(),
  mode: z.number().int().nonnegative(),
  /** A symlink to a directory counts as one (it can be entered). */
  is_dir: z.boolean(),
  is_symlink: z.boolean(),
  modified_at: z.number(),
});
export type FsEntry = z.infer<typeof FsEntry>;
export const FsListing = z.object({ path: z.string(), entries: z.array(FsEntry), truncated: z.boolean() });
export type FsListing = z.infer<typeof FsListing>;
export const FsDeleted = z.object({ path: z.string(), deleted: z.literal(true) });
export const FsUnpacked = z.object({ path: z.string(), entries: z.number().int().nonnegative() });

/**
 * A file's bytes as a stream (op file_open, relayed as target `computer_file`):
 * read from `offset` at most `length` bytes; write the whole file (replaced
 * once the stream ends cleanly); pack a directory as tar.gz; unpack an archive
 * into a directory. Write and unpack answer with one JSON line (FileStreamResult).
 */
export const FileStream = z.discriminatedUnion('op', [
  z.object({ op: z.literal('read'), path: FsPath, offset: z.number().int().nonnegative(), length: z.number().int().nonnegative().optional() }),
  z.object({ op: z.literal('write'), path: FsPath, mode: FsMode.optional() }),
  z.object({ op: z.literal('pack'), path: FsPath }),
  z.object({ op: z.literal('unpack'), path: FsPath, format: z.enum(['auto', 'tar', 'tar.gz', 'zip']) }),
]);
export type FileStream = z.infer<typeof FileStream>;
/** The JSON line a write or an unpack answers with, once done. */
export const FileStreamResult = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), path: z.string(), size: z.number().int().nonnegative().optional(), entries: z.number().int().nonnegative().optional() }),
  z.object({ ok: z.literal(false), code: z.string().max(32), message: z.string().max(4096) }),
]);
export type FileStreamResult = z.infer<typeof FileStreamResult>;

/** What each file operation answers. */
export const FS_RESPONSES = {
  stat: FsStat,
  list: FsListing,
  mkdir: FsStat,
  rename: FsStat,
  copy: FsStat,
  chmod: FsStat,
  delete: FsDeleted,
  unpack: FsUnpacked,
} as const satisfies Record<FsOp, z.ZodType>;

// ------------------------------------------------------------------ watches (1.2)

export const WatchId = z.string().regex(/^[a-z0-9]{1,32}$/);
/** What a watch reports; each producer is optional. */
export const WatchProducers = z.object({
  process: z.object({}).optional(),
  file: z.object({ paths: z.array(FsPath.refine((p) => p.startsWith('/'), 'must be absolute')).min(1).max(16) }).optional(),
  idle: z.object({ threshold_s: z.number().int().min(1).max(86_400) }).optional(),
});
export type WatchProducers = z.infer<typeof WatchProducers>;
/** One event from inside a computer, as the events socket sends it. */
export const ComputerEvent = z.object({ type: z.string().max(64), data: z.record(z.string(), z.unknown()), timestamp: z.string().max(40) });
export type ComputerEvent = z.infer<typeof ComputerEvent>;
/** Producers a watch could not have, and why. */
export const WatchStarted = z.object({ unavailable: z.array(z.object({ producer: z.string().max(32), reason: z.string().max(512) })).max(32) });
export type WatchStarted = z.infer<typeof WatchStarted>;
/** Events per batch at most (the guest cuts a batch there and says how many it dropped). */
export const WATCH_BATCH_MAX = 256;

export const GuestRequestBody = z.discriminatedUnion('op', [
  z.object({ op: z.literal('watch'), watch: WatchId }).extend(WatchProducers.shape),
  z.object({ op: z.literal('unwatch'), watch: WatchId }),
  /** A file operation; answered with FS_RESPONSES[request.op]. */
  z.object({ op: z.literal('fs'), request: FsRequest }),
  /** A file's bytes as a connection `conn` of the TCP family (then tcp_send/tcp_ack/… as for a port). */
  z.object({ op: z.literal('file_open'), conn: z.string().regex(/^[a-z0-9]{1,32}$/), window: z.number().int().min(16 * 1024).max(16 << 20), request: FileStream }),
  z.object({ op: z.literal('ping') }),
  z.object({ op: z.literal('setenv'), env: Env }),
  ExecRequest,
  SpawnRequest,
  /** Payload: the bytes. Answered once they are written to the process (the host's flow-control credit). */
  z.object({ op: z.literal('stdin'), proc: ProcId, offset: z.number().int().nonnegative().optional() }),
  z.object({ op: z.literal('close_stdin'), proc: ProcId }),
  z.object({ op: z.literal('resize'), proc: ProcId, rows: z.number().int().min(1), cols: z.number().int().min(1) }),
  z.object({ op: z.literal('signal'), proc: ProcId, signal: z.number().int().min(1).max(64), group: z.boolean().optional() }),
  z.object({ op: z.literal('list') }),
  /** Replays output from `offsets` (what the host has, which also counts as acknowledged), then streams. */
  z.object({ op: z.literal('attach'), proc: ProcId, offsets: Offsets.optional(), window: OutputWindow.optional() }),
  /** The host has taken output up to these offsets (see `window`). */
  z.object({ op: z.literal('ack'), proc: ProcId, offsets: Offsets }),
  z.object({ op: z.literal('detach'), proc: ProcId }),
  z.object({ op: z.literal('forget'), proc: ProcId }),
  /** Connects to 127.0.0.1:port (then ::1) inside the computer; answered once connected. */
  TcpOpenRequest,
  /** Payload: bytes for the app; answered once written into the socket. */
  z.object({ op: z.literal('tcp_send'), conn: ConnId }),
  /** The host has taken the app's bytes up to `offset`. */
  z.object({ op: z.literal('tcp_ack'), conn: ConnId, offset: z.number().int().nonnegative() }),
  /** FIN to the app once every sent byte is written. */
  z.object({ op: z.literal('tcp_shutdown'), conn: ConnId }),
  /** Ends the connection; with `reset`, abortively (RST). */
  z.object({ op: z.literal('tcp_close'), conn: ConnId, reset: z.boolean() }),
  /** 1.2, VMs: take this hostname, the host's time and host entropy (base64, 16-512 bytes; the kernel reseeds at once). */
  z.object({
    op: z.literal('machine'),
    hostname: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/),
    entropy: z.string().max(1024),
    time_ms: z.number().int().positive(),
  }),
]);
export type GuestRequestBody = z.infer<typeof GuestRequestBody>;
export type GuestOp = GuestRequestBody['op'];

// ----------------------------------------------------------------- responses

export const ExecResponse = z.object({
  exit_code: z.number().int(),
  /** Signal number that ended the process, when one did. */
  signal: z.number().int().nullable(),
  timed_out: z.boolean(),
  truncated: z.boolean(),
  duration_ms: z.number().nonnegative(),
});
export type ExecResponse = z.infer<typeof ExecResponse>;

export const ExitInfo = z.object({
  exit_code: z.number().int(),
  signal: z.number().int().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number().nonnegative(),
  /** With `output_limit`: output past it was dropped. */
  truncated: z.boolean().optional(),
});
export type ExitInfo = z.infer<typeof ExitInfo>;

const StreamRange = z.object({ start: z.number().int().nonnegative(), end: z.number().int().nonnegative() });

export const ProcInfo = z.object({
  proc: ProcId,
  pid: z.number().int(),
  argv: z.array(z.string()),
  pty: z.boolean(),
  /** Per stream: oldest byte offset still buffered and the offset of the next byte. */
  streams: z.partialRecord(StreamName, StreamRange),
  exit: ExitInfo.nullable(),
});
export type ProcInfo = z.infer<typeof ProcInfo>;

/** The `data` schema of a successful response, per op. */
export const GUEST_RESPONSES = {
  ping: z.object({ uptime_s: z.number().nonnegative() }),
  setenv: z.object({}),
  exec: ExecResponse,
  spawn: z.object({ proc: ProcId, pid: z.number().int() }),
  stdin: z.object({ written: z.number().int().nonnegative() }),
  close_stdin: z.object({}),
  resize: z.object({}),
  signal: z.object({}),
  list: z.object({ procs: z.array(ProcInfo) }),
  attach: ProcInfo,
  ack: z.object({}),
  detach: z.object({}),
  forget: z.object({}),
  fs: z.union([FsListing, FsStat, FsDeleted, FsUnpacked]),
  file_open: z.object({}),
  watch: WatchStarted,
  unwatch: z.object({}),
  tcp_open: z.object({}),
  tcp_send: z.object({}),
  tcp_ack: z.object({}),
  tcp_shutdown: z.object({}),
  tcp_close: z.object({}),
  machine: z.object({}),
} as const satisfies Record<GuestOp, z.ZodType>;

/** REFUSED: nothing listens on the port (tcp_open). TIMEOUT: the connection did not open in time. NO_SUCH_PATH, FORBIDDEN, CONFLICT, NO_SPACE: what a path's errno says (fs). */
export const GuestErrorCode = z.enum(['BAD_REQUEST', 'NOT_FOUND', 'BUSY', 'FAILED', 'REFUSED', 'TIMEOUT', 'NO_SUCH_PATH', 'FORBIDDEN', 'CONFLICT', 'NO_SPACE']);
export type GuestErrorCode = z.infer<typeof GuestErrorCode>;

// -------------------------------------------------------------------- frames

const RequestId = z.number().int().nonnegative();

export const GuestHello = z.object({
  t: z.literal('hello'),
  protocol: z.object({ major: z.number().int(), minor: z.number().int() }),
  guest_version: z.string().max(64),
  /**
   * Chosen by the host for each boot (random when the guest was started without
   * one): proves the host reached this computer's guest, and a different value
   * after a reconnect means the computer rebooted.
   */
  boot_id: z.string().max(64),
});

export const GuestResponse = z.discriminatedUnion('ok', [
  z.object({ t: z.literal('res'), id: RequestId, ok: z.literal(true), data: z.unknown() }),
  z.object({
    t: z.literal('res'),
    id: RequestId,
    ok: z.literal(false),
    error: z.object({ code: GuestErrorCode, message: z.string() }),
  }),
]);

/** Output bytes (the frame's payload) starting at `offset` of the stream. */
export const OutputEvent = z.object({
  t: z.literal('evt'),
  ev: z.literal('output'),
  proc: ProcId,
  stream: StreamName,
  offset: z.number().int().nonnegative(),
});
export type OutputEvent = z.infer<typeof OutputEvent>;

export const ExitEvent = z.object({ t: z.literal('evt'), ev: z.literal('exit'), proc: ProcId }).extend(ExitInfo.shape);
export type ExitEvent = z.infer<typeof ExitEvent>;

/** Bytes from the app (the payload) at `offset` of the connection. */
export const TcpDataEvent = z.object({ t: z.literal('evt'), ev: z.literal('tcp_data'), conn: ConnId, offset: z.number().int().nonnegative() });
/** The app closed its side (FIN); the connection may still take bytes. */
export const TcpEndEvent = z.object({ t: z.literal('evt'), ev: z.literal('tcp_end'), conn: ConnId });
/** The connection is gone; `error` when it failed (e.g. the app reset it). */
export const TcpClosedEvent = z.object({ t: z.literal('evt'), ev: z.literal('tcp_closed'), conn: ConnId, error: z.string().max(1024).optional() });
export type TcpEvent = z.infer<typeof TcpDataEvent> | z.infer<typeof TcpEndEvent> | z.infer<typeof TcpClosedEvent>;

/** Events of a watch, in order. */
export const WatchEvent = z.object({ t: z.literal('evt'), ev: z.literal('watch'), watch: WatchId, events: z.array(ComputerEvent).max(WATCH_BATCH_MAX) });

export const GuestEvent = z.discriminatedUnion('ev', [OutputEvent, ExitEvent, TcpDataEvent, TcpEndEvent, TcpClosedEvent, WatchEvent]);

/** Every header the guest may send. */
export const GuestFrameHeader = z.union([GuestHello, GuestResponse, GuestEvent]);
export type GuestFrameHeader = z.infer<typeof GuestFrameHeader>;
