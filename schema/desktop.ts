/**
 * Desktops: the public desktop control API's bodies, and the wire of the
 * desktop daemon inside each computer (host-agent/guest/hangar_desktop).
 *
 * The daemon listens on 127.0.0.1:DESKTOP_CONTROL_PORT inside the computer;
 * the ComputerObject reaches it over a relayed TCP stream. Frames as in the
 * guest protocol:
 *
 *     u32 BE header_len | u32 BE payload_len | header (UTF-8 JSON) | payload (raw bytes)
 *
 * The daemon speaks first with `hello`. Each `req` {t, id, op, args} gets one
 * `res` {t, id, ok, data | error}; a screenshot's PNG travels as the payload.
 * Requests on one connection are handled in order.
 *
 * Versions (major changes break old objects; minor ones only add):
 *  - 1.0  status, screenshot, move, click, mouse_down/up, drag, scroll, type,
 *         key, key_down/up, cursor, windows, focus, launch; any action may ask
 *         for a screenshot after it.
 *  - 1.1  state: the windows and, when asked, the clipboard's text, for the
 *         events socket's window and clipboard producers.
 */
import { z } from 'zod';

export const DESKTOP_PROTOCOL = { major: 1, minor: 1 } as const;

/** The VNC server (Xvnc) inside every computer; only loopback. */
export const DESKTOP_VNC_PORT = 5900;
/** The desktop daemon's control socket inside every computer; only loopback. */
export const DESKTOP_CONTROL_PORT = 5990;
export const DEFAULT_RESOLUTION = '1280x720';

/** Where the guest is inside a computer: the read-only guest mount. */
export const GUEST_DIR_IN_COMPUTER = '/run/hangar-guest';

/**
 * How a shell inside the computer runs the desktop daemon: on the guest's own
 * runtime (its interpreter through its own loader, described by the mount's
 * runtime.json; the daemon's code in its guest/ directory) so that nothing the
 * tenant installs or removes reaches it; on a mount without a runtime (older
 * hosts), on the computer's python3 with the code at the mount's top.
 */
const daemonCommand = (args: string): string =>
  `R=${GUEST_DIR_IN_COMPUTER}; if [ -f "$R/runtime.json" ]; then set -- "$R"/lib/ld-linux*.so.*; L=$1; set -- "$R"/bin/python3*; ` +
  `exec "$L" --library-path "$R/lib" "$1" -I "$R/guest/desktop.py" ${args}; else exec /usr/bin/python3 -I "$R/desktop.py" ${args}; fi`;

/** WIDTHxHEIGHT, 320x200 to 3840x2160 (a 4K screen's PNG stays well under the frame limit). */
export const Resolution = z
  .string()
  .regex(/^[1-9][0-9]{2,3}x[1-9][0-9]{2,3}$/, 'must be WIDTHxHEIGHT, e.g. 1280x720')
  .refine((r) => {
    const [w, h] = r.split('x').map(Number);
    return w >= 320 && w <= 3840 && h >= 200 && h <= 2160;
  }, 'must be between 320x200 and 3840x2160');

/** The command (run as `user` through exec) that starts the desktop; it returns at once and does nothing when the daemon already runs. */
export const DESKTOP_START_COMMAND = (resolution: string): string =>
  daemonCommand(`start --resolution ${Resolution.parse(resolution)} --port ${DESKTOP_CONTROL_PORT} --vnc-port ${DESKTOP_VNC_PORT}`);
export const DESKTOP_STATUS_COMMAND = daemonCommand(`status --port ${DESKTOP_CONTROL_PORT}`);

// ------------------------------------------------------------ the daemon's wire

export const DESKTOP_MAX_HEADER_BYTES = 1 << 20;
/** A PNG of the largest screen fits easily (3840x2160 RGB before compression is 25 MB; desktops compress far better). */
export const DESKTOP_MAX_PAYLOAD_BYTES = 64 << 20;

export const DaemonHello = z.object({
  t: z.literal('hello'),
  version: z.string().max(64),
  protocol: z.object({ major: z.number().int(), minor: z.number().int() }),
});

export const DAEMON_ERROR_CODES = ['BAD_REQUEST', 'NOT_READY', 'NOT_FOUND', 'FAILED'] as const;

export const DaemonResponse = z.discriminatedUnion('ok', [
  z.object({ t: z.literal('res'), id: z.number().int(), ok: z.literal(true), data: z.record(z.string(), z.unknown()) }),
  z.object({
    t: z.literal('res'),
    id: z.number().int(),
    ok: z.literal(false),
    error: z.object({ code: z.enum(DAEMON_ERROR_CODES), message: z.string().max(4096), retry_after: z.number().int().min(1).max(60).optional() }),
  }),
]);
export type DaemonResponse = z.infer<typeof DaemonResponse>;

export const DAEMON_OPS = [
  'status', 'screenshot', 'move', 'click', 'mouse_down', 'mouse_up', 'drag', 'scroll', 'type', 'key', 'key_down', 'key_up',
  'cursor', 'windows', 'focus', 'launch', 'state',
] as const;
export type DaemonOp = (typeof DAEMON_OPS)[number];

/** What the daemon says about its desktop. */
export const DesktopStatus = z.object({
  ready: z.boolean(),
  state: z.string().max(32),
  error: z.string().max(4096).nullable(),
  display: z.string().max(16),
  vnc_port: z.number().int(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  retry_after: z.number().int().optional(),
});
export type DesktopStatus = z.infer<typeof DesktopStatus>;

export const CursorPosition = z.object({ x: z.number().int(), y: z.number().int() });

export const WindowInfo = z.object({
  id: z.string().max(16),
  title: z.string().max(4096),
  app: z.string().max(256).nullable(),
  pid: z.number().int().nullable(),
  x: z.number().int(),
  y: z.number().int(),
  width: z.number().int(),
  height: z.number().int(),
  geometry: z.object({ x: z.number().int(), y: z.number().int(), width: z.number().int(), height: z.number().int() }),
  focused: z.boolean(),
  minimized: z.boolean(),
});
export type WindowInfo = z.infer<typeof WindowInfo>;

/** Clipboard text as far as it travels (bytes of UTF-8, cut at a character). */
export const CLIPBOARD_TEXT_CAP = 64 * 1024;

/**
 * The clipboard's text as the daemon read it: the hash and the length are of
 * all of it, `text` the first CLIPBOARD_TEXT_CAP bytes (absent when the hash
 * is the one the caller said it already has).
 */
export const ClipboardState = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  truncated: z.boolean(),
  text: z.string().max(CLIPBOARD_TEXT_CAP).optional(),
});
export type ClipboardState = z.infer<typeof ClipboardState>;

/** What the `state` op answers: null clipboard when it holds no text (or was not asked for). */
export const DesktopState = z.object({
  windows: z.array(WindowInfo).max(4096),
  clipboard: ClipboardState.nullable().optional(),
  clipboard_error: z.string().max(1024).optional(),
});
export type DesktopState = z.infer<typeof DesktopState>;

/** The screenshot an action was asked to answer with (its PNG is the frame's payload). */
const AfterShotInfo = z.object({ format: z.literal('png'), width: z.number().int(), height: z.number().int(), bytes: z.number().int().optional() });
/** An action's data: its own fields, and the screenshot taken after it when one was asked for. */
const action = <S extends z.ZodRawShape>(shape: S) => z.object({ ...shape, screenshot: AfterShotInfo.optional() });
const AtCursor = action({ cursor: CursorPosition });

/** Result data of each op, checked when it arrives (the daemon runs inside a tenant's computer: not trusted code). */
export const DAEMON_RESULTS = {
  status: DesktopStatus,
  screenshot: z.object({ format: z.literal('png'), width: z.number().int(), height: z.number().int(), x: z.number().int(), y: z.number().int() }),
  move: AtCursor,
  click: AtCursor,
  mouse_down: AtCursor,
  mouse_up: AtCursor,
  drag: AtCursor,
  scroll: AtCursor,
  type: action({ characters: z.number().int(), duration_ms: z.number() }),
  key: action({ pressed: z.array(z.string().max(1024)).max(64) }),
  key_down: action({ held: z.number().int() }),
  key_up: action({ held: z.number().int() }),
  cursor: CursorPosition,
  windows: z.object({ windows: z.array(WindowInfo).max(4096) }),
  focus: action({ window_id: z.string().max(16), focused: z.boolean() }),
  launch: action({ pid: z.number().int(), command: z.array(z.string()), window: WindowInfo.optional() }),
  state: DesktopState,
} as const satisfies Record<DaemonOp, z.ZodType>;

// ------------------------------------------------------------ the public API's bodies

/** A screen pixel coordinate; whether it is on this computer's screen is the daemon's answer (400 when not). */
const Coord = z.number().int().min(0).max(16_383);
const Button = z.enum(['left', 'right', 'middle']);

/**
 * Every action may ask for a fresh screenshot in its answer: `true`, or
 * `{delay_ms}` to let the screen settle first (at most 10 s).
 */
const AfterShot = z.union([z.boolean(), z.object({ delay_ms: z.number().int().min(0).max(10_000).default(0) })]).optional();

const Point = { x: Coord, y: Coord };
const OptionalPoint = { x: Coord.optional(), y: Coord.optional() };
const bothOrNeither = (b: { x?: number; y?: number }) => (b.x === undefined) === (b.y === undefined);
const BOTH = { message: 'give both x and y, or neither to act at the cursor' };

export const ClickBody = z
  .object({ ...OptionalPoint, button: Button.default('left'), clicks: z.number().int().min(1).max(3).optional(), screenshot: AfterShot })
  .refine(bothOrNeither, BOTH);
export const DoubleClickBody = z.object({ ...OptionalPoint, button: Button.default('left'), screenshot: AfterShot }).refine(bothOrNeither, BOTH);
export const RightClickBody = z.object({ ...OptionalPoint, screenshot: AfterShot }).refine(bothOrNeither, BOTH);
export const MouseButtonBody = z.object({ ...OptionalPoint, button: Button.default('left'), screenshot: AfterShot }).refine(bothOrNeither, BOTH);
export const MoveBody = z.object({ ...Point, screenshot: AfterShot });

/** Both namings clients send: the issue's start/end and the SDKs' from/to. */
export const DragBody = z
  .object({
    start_x: Coord.optional(), start_y: Coord.optional(), end_x: Coord.optional(), end_y: Coord.optional(),
    from_x: Coord.optional(), from_y: Coord.optional(), to_x: Coord.optional(), to_y: Coord.optional(),
    button: Button.default('left'),
    screenshot: AfterShot,
  })
  .transform((b, ctx) => {
    const fromX = b.start_x ?? b.from_x;
    const fromY = b.start_y ?? b.from_y;
    const toX = b.end_x ?? b.to_x;
    const toY = b.end_y ?? b.to_y;
    if (fromX === undefined || fromY === undefined || toX === undefined || toY === undefined) {
      ctx.addIssue({ code: 'custom', message: 'give start_x, start_y, end_x, end_y (or from_x, from_y, to_x, to_y)' });
      return z.NEVER;
    }
    return { from_x: fromX, from_y: fromY, to_x: toX, to_y: toY, button: b.button, screenshot: b.screenshot };
  });

/** `amount` (the issue, the Elixir SDK) or `clicks` (the Python and TypeScript SDKs): wheel notches, default 3. */
export const ScrollBody = z
  .object({
    ...OptionalPoint,
    direction: z.enum(['up', 'down', 'left', 'right']).default('down'),
    amount: z.number().int().min(1).max(100).optional(),
    clicks: z.number().int().min(1).max(100).optional(),
    screenshot: AfterShot,
  })
  .refine(bothOrNeither, BOTH);

export const MAX_TYPE_CHARS = 100_000;
/** `delay` (the SDKs) or `delay_ms`: milliseconds between keystrokes, default none. */
export const TypeBody = z.object({
  text: z.string().min(1).max(MAX_TYPE_CHARS),
  delay: z.number().int().min(0).max(1000).optional(),
  delay_ms: z.number().int().min(0).max(1000).optional(),
  screenshot: AfterShot,
});

const KeyName = z.string().min(1).max(256);
/** `key`: a combination such as "ctrl+c", or several separated by spaces ("ctrl+a Delete"); `keys`: the keys of one combination. */
export const KeyBody = z
  .object({ key: KeyName.optional(), keys: z.array(KeyName).min(1).max(16).optional(), screenshot: AfterShot })
  .refine((b) => (b.key === undefined) !== (b.keys === undefined), { message: 'give key (e.g. "ctrl+c") or keys (e.g. ["ctrl", "c"])' });
export const HotkeyBody = z.object({ keys: z.array(KeyName).min(1).max(16), screenshot: AfterShot });
export const KeyHoldBody = z.object({ key: KeyName, screenshot: AfterShot });

export const MAX_WAIT_S = 120;
/** `seconds` (the issue, the Python and TypeScript SDKs) or `ms` (the Elixir SDK). */
export const WaitBody = z
  .object({
    seconds: z.number().min(0).max(MAX_WAIT_S).optional(),
    ms: z.number().int().min(0).max(MAX_WAIT_S * 1000).optional(),
    screenshot: AfterShot,
  })
  .refine((b) => (b.seconds === undefined) !== (b.ms === undefined), { message: 'give seconds (or ms)' });

/** Window ids are strings of the X window id; numbers are accepted too. */
export const FocusBody = z.object({
  window_id: z.union([z.string().regex(/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/, 'must be a window id from GET …/desktop/windows'), z.number().int().positive().max(0xffffffff)]),
  screenshot: AfterShot,
});

/** An app by name (`app`, or `app_name` as the Python and TypeScript SDKs send it), with arguments; or a shell command. */
export const LaunchBody = z
  .object({
    app: z.string().min(1).max(8192).optional(),
    app_name: z.string().min(1).max(8192).optional(),
    command: z.string().min(1).max(8192).optional(),
    /** Wait up to this many seconds for the app's first window and answer with it (true: 30). */
    wait_for_window: z.union([z.boolean(), z.number().int().min(0).max(30)]).optional(),
    screenshot: AfterShot,
  })
  .refine((b) => [b.app ?? b.app_name, b.command].filter((v) => v !== undefined).length === 1, {
    message: 'give app (e.g. "terminal", "browser", "files", "firefox", or a program with arguments) or command',
  })
  .refine((b) => !`${b.app ?? b.app_name ?? ''}${b.command ?? ''}`.includes('\0'), { message: 'must not contain NUL characters' });

export const RegionBody = z.object({ x: Coord, y: Coord, width: z.number().int().min(1).max(16_384), height: z.number().int().min(1).max(16_384) });

/** OpenComputers: a desktop ticket for the host's own VNC server, on 5900 unless `port` says otherwise. */
export const DesktopTicketBody = z.object({ port: z.number().int().min(1).max(65535).optional() });
