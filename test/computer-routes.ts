/**
 * Every tenant route that takes a computer id, each with a request that would
 * pass validation, for the tests that walk them all (another tenant's key,
 * malformed ids). test/worker/computers-isolation.test.ts checks this list
 * against the Worker's route table, so a new route cannot be left out.
 */
export interface ComputerRouteSample {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** After /api/v1/computers/{id}. */
  path: string;
  /** The route's path as the route table has it. */
  pattern: string;
  body?: unknown;
}

/** A snapshot id for the snapshot routes (the computer is checked first: any id does). */
const SOME_SNAPSHOT = '6f1c2a7e-0b4d-4c1e-9a7f-3d2e1c0b9a8f';

/** What a command sent by one of these requests would leave behind, had it run. */
export const INTRUDER_MARK = '/tmp/intruder-was-here';

const r = (method: ComputerRouteSample['method'], path: string, pattern: string, body?: unknown): ComputerRouteSample => ({
  method,
  path,
  pattern: `/api/v1/computers/:id${pattern}`,
  body,
});

export const COMPUTER_ROUTE_SAMPLES: ComputerRouteSample[] = [
  r('GET', '', ''),
  r('PATCH', '', '', { agent_session_id: 'stolen', name: 'stolen' }),
  r('PUT', '', '', { agent_session_id: 'stolen', name: 'stolen' }),
  r('POST', '/start', '/start'),
  r('POST', '/stop', '/stop'),
  r('POST', '/restart', '/restart'),
  r('POST', '/clone', '/clone', { name: 'stolen' }),
  r('POST', '/resize', '/resize', { size: 'large' }),
  r('POST', '/move', '/move', { region: 'local' }),
  r('GET', '/auto-stop', '/auto-stop'),
  r('PATCH', '/auto-stop', '/auto-stop', { auto_stop_seconds: 60 }),
  r('GET', '/vnc-credentials', '/vnc-credentials'),
  r('POST', '/stream-token', '/stream-token'),
  r('GET', '/urls', '/urls'),
  r('GET', '/apps', '/apps'),
  r('GET', '/metrics?window=7d', '/metrics'),
  r('GET', '/env', '/env'),
  r('POST', '/env', '/env', { name: 'INJECTED', value: 'x' }),
  r('PATCH', '/env/SECRET', '/env/:name', { value: 'overwritten' }),
  r('DELETE', '/env/SECRET', '/env/:name'),
  r('GET', '/ports', '/ports'),
  r('POST', '/ports', '/ports', { port: 9999, visibility: 'public' }),
  r('GET', '/ports/3000', '/ports/:port'),
  r('PATCH', '/ports/3000', '/ports/:port', { visibility: 'private' }),
  r('POST', '/ports/3000/rotate-token', '/ports/:port/rotate-token'),
  r('POST', '/ports/3000/link', '/ports/:port/link', { path: '/' }),
  r('DELETE', '/ports/3000', '/ports/:port'),
  r('POST', '/exec', '/exec', { command: `touch ${INTRUDER_MARK}; printenv SECRET` }),
  r('POST', '/exec/python', '/exec/python', { code: `open("${INTRUDER_MARK}", "w")` }),
  r('POST', '/exec/stream', '/exec/stream', { command: `touch ${INTRUDER_MARK}` }),
  r('POST', '/terminal', '/terminal', {}),
  r('POST', '/pty/default/resize', '/pty/:session_id/resize', { cols: 100, rows: 30 }),
  r('GET', '/desktop/screenshot', '/desktop/screenshot'),
  r('POST', '/desktop/screenshot-region', '/desktop/screenshot-region', { x: 0, y: 0, width: 10, height: 10 }),
  r('POST', '/desktop/click', '/desktop/click', { x: 10, y: 10, button: 'left' }),
  r('POST', '/desktop/double-click', '/desktop/double-click', { x: 10, y: 10 }),
  r('POST', '/desktop/right-click', '/desktop/right-click', { x: 10, y: 10 }),
  r('POST', '/desktop/move', '/desktop/move', { x: 10, y: 10 }),
  r('POST', '/desktop/mouse-down', '/desktop/mouse-down', { x: 10, y: 10 }),
  r('POST', '/desktop/mouse-up', '/desktop/mouse-up', { x: 10, y: 10 }),
  r('POST', '/desktop/drag', '/desktop/drag', { start_x: 1, start_y: 1, end_x: 20, end_y: 20 }),
  r('POST', '/desktop/scroll', '/desktop/scroll', { x: 10, y: 10, direction: 'down', amount: 3 }),
  r('POST', '/desktop/type', '/desktop/type', { text: `touch ${INTRUDER_MARK}\n` }),
  r('POST', '/desktop/key', '/desktop/key', { key: 'Return' }),
  r('POST', '/desktop/hotkey', '/desktop/hotkey', { keys: ['ctrl', 'c'] }),
  r('POST', '/desktop/key-down', '/desktop/key-down', { key: 'shift' }),
  r('POST', '/desktop/key-up', '/desktop/key-up', { key: 'shift' }),
  r('POST', '/desktop/wait', '/desktop/wait', { seconds: 0 }),
  r('GET', '/desktop/windows', '/desktop/windows'),
  r('GET', '/desktop/cursor', '/desktop/cursor'),
  r('GET', '/desktop/screen-size', '/desktop/screen-size'),
  r('GET', '/desktop/environment', '/desktop/environment'),
  r('POST', '/desktop/window/focus', '/desktop/window/focus', { window_id: '4194305' }),
  r('POST', '/desktop/launch', '/desktop/launch', { command: `touch ${INTRUDER_MARK}` }),
  r('GET', '/viewer-password', '/viewer-password'),
  r('POST', '/viewer-password/rotate', '/viewer-password/rotate'),
  r('GET', '/embed', '/embed'),
  r('GET', '/events', '/events'),
  r('GET', '/files?path=/workspace', '/files'),
  r('GET', '/files/readdir?path=/', '/files/readdir'),
  r('POST', '/files/stat', '/files/stat', { path: '/etc/hostname' }),
  r('POST', '/files/mkdir', '/files/mkdir', { path: INTRUDER_MARK }),
  r('POST', '/files/rename', '/files/rename', { from: '/workspace', to: INTRUDER_MARK }),
  r('POST', '/files/copy', '/files/copy', { from: '/etc/hostname', to: INTRUDER_MARK }),
  r('POST', '/files/chmod', '/files/chmod', { path: '/workspace', mode: '0777' }),
  r('DELETE', '/files?path=/workspace', '/files'),
  r('GET', '/files/download?path=/etc/hostname', '/files/download'),
  r('POST', '/files/write', '/files/write', { path: INTRUDER_MARK, content: 'x' }),
  r('POST', `/files/upload?path=${INTRUDER_MARK}`, '/files/upload', { raw: 'a JSON body is written as the file' }),
  r('POST', '/files/export', '/files/export', { path: '/etc/hostname' }),
  r('POST', '/snapshots', '/snapshots', { comment: 'stolen' }),
  r('GET', '/snapshots', '/snapshots'),
  r('GET', `/snapshots/${SOME_SNAPSHOT}`, '/snapshots/:sid'),
  r('PATCH', `/snapshots/${SOME_SNAPSHOT}`, '/snapshots/:sid', { keep: true }),
  r('DELETE', `/snapshots/${SOME_SNAPSHOT}`, '/snapshots/:sid'),
  r('POST', `/snapshots/${SOME_SNAPSHOT}/restore`, '/snapshots/:sid/restore'),
  r('GET', `/snapshots/${SOME_SNAPSHOT}/events`, '/snapshots/:sid/events'),
  r('POST', `/restore/${SOME_SNAPSHOT}`, '/restore/:sid', { name: 'stolen' }),
  r('GET', '/logs?lines=10', '/logs'),
  r('GET', '/logs/stream', '/logs/stream'),
  // Last: it would remove the computer.
  r('DELETE', '', ''),
];
