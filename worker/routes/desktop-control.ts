/**
 * The desktop control API: /api/v1/computers/{id}/desktop/… Each call goes to
 * the computer's ComputerObject, which checks the caller and relays it to the
 * desktop daemon inside the computer (durable-objects/desktop/). Paths and
 * bodies are the ones clients in the wild send (issue 10, the MIOSA SDKs);
 * docs/desktop.md lists them with the names each accepts.
 *
 * Screenshots answer `image/png`, or JSON with the PNG in base64 for clients
 * that want JSON (`?format=base64`, or an Accept header that asks for JSON and
 * not images). Actions answer `{success: true, status: "ok", …}` once the X
 * server has the input; with `screenshot: true` (or `{delay_ms}`) the answer
 * carries a screenshot taken after it.
 */
import { Buffer } from 'node:buffer';
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import {
  ClickBody,
  DoubleClickBody,
  DragBody,
  FocusBody,
  HotkeyBody,
  KeyBody,
  KeyHoldBody,
  LaunchBody,
  MouseButtonBody,
  MoveBody,
  RegionBody,
  RightClickBody,
  ScrollBody,
  TypeBody,
  WaitBody,
  type DaemonOp,
} from '../../schema/desktop.ts';
import type { DesktopResult } from '../../durable-objects/desktop/desktop-daemon.ts';
import type { DaemonAnswer } from '../../durable-objects/desktop/daemon-connection.ts';
import { json } from '../http/responses.ts';
import { validate } from '../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, requireComputerId } from '../computers/access.ts';

const BASE = '/api/v1/computers/:id/desktop';
const ACTION_TIMEOUT_MS = 30_000;
/** Typing at most this long in all (text × delay). */
const MAX_TYPING_MS = 300_000;

type AfterShot = boolean | { delay_ms: number } | undefined;

/** The daemon's `screenshot` argument for an action that asked for one afterwards. */
const shotArg = (s: AfterShot): { screenshot?: { delay_ms: number } } => (s === undefined || s === false ? {} : { screenshot: s === true ? { delay_ms: 0 } : s });

function unwrapDesktop<T>(r: DesktopResult<T>): T {
  if (r.ok) return r.value;
  throw new ApiError(r.code, r.message, r.retry_after ? { 'retry-after': String(r.retry_after) } : {});
}

async function call(c: RouteContext, op: DaemonOp, args: Record<string, unknown>, timeoutMs = ACTION_TIMEOUT_MS): Promise<DaemonAnswer> {
  const id = requireComputerId(c.params.id);
  return unwrapDesktop(await computerStub(c.env, id).desktopCall(callerOf(c.principal), op, args, timeoutMs));
}

/** The JSON form of a PNG. */
export function pngJson(png: Uint8Array, width: number, height: number) {
  return { format: 'png', media_type: 'image/png', width, height, base64: Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64') };
}

/** JSON when the query or the Accept header asks for it; PNG otherwise. */
function wantsJson(c: RouteContext, bodyFormat?: string): boolean {
  const format = bodyFormat ?? c.query.get('format') ?? c.query.get('encoding');
  if (format) return format === 'base64' || format === 'json';
  const accept = c.request.headers.get('accept') ?? '';
  return /application\/json/.test(accept) && !/image\/(png|\*)|\*\/\*/.test(accept);
}

function screenshotResponse(c: RouteContext, a: DaemonAnswer, bodyFormat?: string): Response {
  const { width, height } = a.data as { width: number; height: number };
  if (wantsJson(c, bodyFormat)) return json(pngJson(a.payload, width, height));
  return new Response(a.payload, {
    headers: { 'content-type': 'image/png', 'cache-control': 'no-store', 'x-screen-width': String(width), 'x-screen-height': String(height) },
  });
}

/** An action's answer: the daemon's data, and the screenshot it was asked for. */
function actionResponse(a: DaemonAnswer): Response {
  const { screenshot, ...data } = a.data as Record<string, unknown> & { screenshot?: { width: number; height: number } };
  return json({ success: true, status: 'ok', ...data, ...(screenshot ? { screenshot: pngJson(a.payload, screenshot.width, screenshot.height) } : {}) });
}

/** A POST action: body validated by `schema`, turned into the daemon's op and arguments. */
function action<S extends z.ZodType>(path: string, schema: S, toOp: (b: z.infer<S>) => [DaemonOp, Record<string, unknown>], timeout?: (b: z.infer<S>) => number): RouteDef {
  return route({
    method: 'POST',
    path: `${BASE}/${path}`,
    auth: 'tenant',
    body: schema,
    handler: async (c) => {
      const [op, args] = toOp(c.body as z.infer<S>);
      return actionResponse(await call(c, op, args, timeout?.(c.body as z.infer<S>)));
    },
  });
}

const pointArgs = (b: { x?: number; y?: number }) => (b.x === undefined ? {} : { x: b.x, y: b.y });

const ScreenshotQuery = z.object({
  x: z.coerce.number().int().min(0).optional(),
  y: z.coerce.number().int().min(0).optional(),
  width: z.coerce.number().int().min(1).optional(),
  height: z.coerce.number().int().min(1).optional(),
});

async function screenshot(c: RouteContext, region?: z.infer<typeof RegionBody>, bodyFormat?: string): Promise<Response> {
  return screenshotResponse(c, await call(c, 'screenshot', region ? { region } : {}), bodyFormat);
}

export const DESKTOP_CONTROL_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: `${BASE}/screenshot`,
    auth: 'tenant',
    handler: async (c) => {
      const q = validate(ScreenshotQuery, Object.fromEntries(c.query), 'query');
      const some = [q.x, q.y, q.width, q.height].filter((v) => v !== undefined).length;
      if (some !== 0 && some !== 4) throw new ApiError('VALIDATION_FAILED', 'a region needs all of x, y, width and height');
      return screenshot(c, some === 4 ? validate(RegionBody, q, 'query') : undefined);
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/screenshot-region`,
    auth: 'tenant',
    body: RegionBody.extend({ format: z.enum(['png', 'base64', 'json']).optional() }),
    handler: async (c) => {
      const { format, ...region } = c.body;
      return screenshot(c, region, format);
    },
  }),
  action('click', ClickBody, (b) => ['click', { ...pointArgs(b), button: b.button, count: b.clicks ?? 1, ...shotArg(b.screenshot) }]),
  action('double-click', DoubleClickBody, (b) => ['click', { ...pointArgs(b), button: b.button, count: 2, ...shotArg(b.screenshot) }]),
  action('right-click', RightClickBody, (b) => ['click', { ...pointArgs(b), button: 'right', count: 1, ...shotArg(b.screenshot) }]),
  action('move', MoveBody, (b) => ['move', { x: b.x, y: b.y, ...shotArg(b.screenshot) }]),
  action('mouse-down', MouseButtonBody, (b) => ['mouse_down', { ...pointArgs(b), button: b.button, ...shotArg(b.screenshot) }]),
  action('mouse-up', MouseButtonBody, (b) => ['mouse_up', { ...pointArgs(b), button: b.button, ...shotArg(b.screenshot) }]),
  action('drag', DragBody, (b) => ['drag', { from_x: b.from_x, from_y: b.from_y, to_x: b.to_x, to_y: b.to_y, button: b.button, ...shotArg(b.screenshot) }]),
  action('scroll', ScrollBody, (b) => ['scroll', { ...pointArgs(b), direction: b.direction, amount: b.amount ?? b.clicks ?? 3, ...shotArg(b.screenshot) }]),
  action(
    'type',
    TypeBody.refine((b) => [...b.text].length * (b.delay ?? b.delay_ms ?? 0) <= MAX_TYPING_MS, { message: `text × delay must stay under ${MAX_TYPING_MS / 1000} s of typing` }),
    (b) => ['type', { text: b.text, delay_ms: b.delay ?? b.delay_ms ?? 0, ...shotArg(b.screenshot) }],
    () => MAX_TYPING_MS + 30_000,
  ),
  action('key', KeyBody, (b) => ['key', { ...(b.key !== undefined ? { key: b.key } : { keys: b.keys }), ...shotArg(b.screenshot) }]),
  action('hotkey', HotkeyBody, (b) => ['key', { keys: b.keys, ...shotArg(b.screenshot) }]),
  action('key-down', KeyHoldBody, (b) => ['key_down', { key: b.key, ...shotArg(b.screenshot) }]),
  action('key-up', KeyHoldBody, (b) => ['key_up', { key: b.key, ...shotArg(b.screenshot) }]),
  action('window/focus', FocusBody, (b) => ['focus', { window_id: String(b.window_id), ...shotArg(b.screenshot) }]),
  action(
    'launch',
    LaunchBody,
    (b) => {
      const wait = b.wait_for_window === true ? 30 : b.wait_for_window === false || b.wait_for_window === undefined ? 0 : b.wait_for_window;
      const target = b.command !== undefined ? { command: b.command } : { app: b.app ?? b.app_name };
      return ['launch', { ...target, wait_for_window_s: wait, ...shotArg(b.screenshot) }];
    },
    () => 60_000,
  ),
  route({
    method: 'POST',
    path: `${BASE}/wait`,
    auth: 'tenant',
    body: WaitBody,
    handler: async (c) => {
      const ms = c.body.ms ?? Math.round((c.body.seconds ?? 0) * 1000);
      const id = requireComputerId(c.params.id);
      const a = unwrapDesktop<DaemonAnswer>(await computerStub(c.env, id).desktopWait(callerOf(c.principal), ms, shotArg(c.body.screenshot)));
      return actionResponse(a);
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/cursor`,
    auth: 'tenant',
    handler: async (c) => json((await call(c, 'cursor', {})).data),
  }),
  route({
    method: 'GET',
    path: `${BASE}/windows`,
    auth: 'tenant',
    handler: async (c) => {
      const all = c.query.get('all');
      const { windows } = (await call(c, 'windows', { all: all === 'true' || all === '1' })).data as { windows: unknown[] };
      // `windows` (the issue, TypeScript SDK) and `data` (the Python and Elixir SDKs).
      return json({ windows, data: windows });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/screen-size`,
    auth: 'tenant',
    handler: async (c) => {
      const { width, height } = (await call(c, 'status', {})).data as { width: number; height: number };
      return json({ width, height });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/environment`,
    auth: 'tenant',
    handler: async (c) => {
      const s = (await call(c, 'status', {})).data as { width: number; height: number; display: string; ready: boolean; state: string };
      return json({
        name: 'xfce', session_type: 'x11', resolution: `${s.width}x${s.height}`, width: s.width, height: s.height,
        color_depth: 24, display: s.display, ready: s.ready, state: s.state,
      });
    },
  }),
];
