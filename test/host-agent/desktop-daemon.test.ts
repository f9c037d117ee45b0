/**
 * The desktop daemon in a real computer: started as the API starts it (an exec
 * of the guest mount's desktop.py), then driven over its control socket
 * (127.0.0.1:5990 inside the computer) by a small client run in the same
 * computer — the API reaches the same socket over the relay (test/e2e/desktop*).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { DESKTOP_START_COMMAND, DESKTOP_STATUS_COMMAND } from '../../schema/desktop.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';
import { until } from '../until.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;

const run = async (command: string, stdin?: string) => {
  const r = await driver.exec(spec.id, { command, timeout_s: 60, max_output_bytes: 8 << 20, stdin });
  return r;
};

/** A one-shot client of the control socket: sends each request in order, prints each answer as a JSON line (payload as its length and PNG size). */
const CLIENT = String.raw`
import json, socket, struct, sys
P = struct.Struct(">II")
def rx(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError("closed")
        b += c
    return b
def frame(s):
    h, p = P.unpack(rx(s, 8)); head = json.loads(rx(s, h)); body = rx(s, p) if p else b""
    return head, body
s = socket.create_connection(("127.0.0.1", 5990), timeout=60)
hello, _ = frame(s)
for n, line in enumerate(sys.stdin.read().splitlines(), 1):
    op, args = json.loads(line)
    raw = json.dumps({"t": "req", "id": n, "op": op, "args": args}).encode()
    s.sendall(P.pack(len(raw), 0) + raw)
    head, body = frame(s)
    png = None
    if body[:8] == b"\x89PNG\r\n\x1a\n":
        png = struct.unpack(">II", body[16:24])
    print(json.dumps({"res": head, "payload": len(body), "png": png}, ensure_ascii=False))
`;

interface Answer {
  res: { ok: boolean; data?: Record<string, unknown>; error?: { code: string; message: string } };
  payload: number;
  png: [number, number] | null;
}

async function calls(...reqs: Array<[string, Record<string, unknown>]>): Promise<Answer[]> {
  const input = reqs.map((r) => JSON.stringify(r)).join('\n');
  const r = await run(`python3 -c '${CLIENT.replace(/'/g, `'\\''`)}'`, input);
  expect(r.exit_code, r.output).toBe(0);
  return r.output.trim().split('\n').map((l) => JSON.parse(l) as Answer);
}

const call = async (op: string, args: Record<string, unknown> = {}) => (await calls([op, args]))[0];


beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Desk Box' });
  const started = await run(DESKTOP_START_COMMAND('1280x720'));
  expect(started.exit_code, started.output).toBe(0);
  await until('the desktop to be ready', async () => (await run(DESKTOP_STATUS_COMMAND)).output.includes('"ready": true'));
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('the desktop daemon in a computer', () => {
  it('a second start finds the running daemon and leaves it alone', async () => {
    const again = await run(DESKTOP_START_COMMAND('1280x720'));
    expect(again.exit_code).toBe(0);
    expect(JSON.parse(again.output)).toMatchObject({ started: false });
  });

  it('runs the desktop as user, in the computer', async () => {
    const ps = await run('ps -o user=,comm= -C Xvnc -C xfwm4 -C xfce4-panel');
    expect(ps.output).toMatch(/^user\s+Xvnc$/m);
    expect(ps.output).toMatch(/^user\s+xfwm4$/m);
    // VNC listens only inside the computer, on loopback.
    const listen = await run('ss -Hltn');
    expect(listen.output).toMatch(/127\.0\.0\.1:5900/);
    expect(listen.output).not.toMatch(/0\.0\.0\.0:5900|\*:5900/);
  });

  it('takes full-screen and region screenshots of the requested size', async () => {
    const [full, region] = await calls(['screenshot', {}], ['screenshot', { region: { x: 100, y: 50, width: 300, height: 200 } }]);
    expect(full.res.ok).toBe(true);
    expect(full.png).toEqual([1280, 720]);
    expect(region.png).toEqual([300, 200]);
    expect(region.res.data).toMatchObject({ width: 300, height: 200, x: 100, y: 50 });
  });

  it('refuses coordinates outside the screen and unknown keys as bad requests', async () => {
    const [click, region, key] = await calls(
      ['click', { x: 1280, y: 10 }],
      ['screenshot', { region: { x: 1200, y: 0, width: 200, height: 10 } }],
      ['key', { key: 'ctrl+nosuchkey' }],
    );
    expect(click.res.error).toMatchObject({ code: 'BAD_REQUEST' });
    expect(click.res.error?.message).toMatch(/x must be between 0 and 1279/);
    expect(region.res.error).toMatchObject({ code: 'BAD_REQUEST' });
    expect(key.res.error?.message).toMatch(/unknown key 'nosuchkey'/);
  });

  it('types any Unicode text into a terminal under a German layout, and windows and cursor reflect it', async () => {
    const launched = await call('launch', { app: 'terminal', wait_for_window_s: 30 });
    expect(launched.res.ok, JSON.stringify(launched.res)).toBe(true);
    const win = launched.res.data?.window as { id: string; app: string } | undefined;
    expect(win?.app).toBe('Xfce4-terminal');
    // Layout switched the way a user would; the daemon must notice the new keymap on its own.
    const layout = await run('DISPLAY=:0 setxkbmap de && DISPLAY=:0 setxkbmap -query');
    expect(layout.output).toMatch(/layout:\s+de/);
    const line = 'yz@[]{}|~ ÄÖÜß€ ąęł αβγ абв ✓→ 中文';
    await until('the terminal to have focus', async () => ((await call('windows')).res.data?.windows as Array<{ id: string; focused: boolean }>).find((w) => w.id === win?.id && w.focused));
    const typed = await call('type', { text: `printf '%s\\n' '${line}' > /tmp/typed.txt\n` });
    expect(typed.res.ok).toBe(true);
    const got = await until('the file the terminal wrote', async () => {
      const r = await run('cat /tmp/typed.txt 2>/dev/null');
      return r.output ? r.output : null;
    });
    expect(got).toBe(`${line}\n`);
    await call('move', { x: 640, y: 600 });
    const cursor = await call('cursor');
    expect(cursor.res.data).toEqual({ x: 640, y: 600 });
  });

  it('answers key combinations and held keys', async () => {
    const [combo, down, up] = await calls(['key', { key: 'ctrl+shift+t' }], ['key_down', { key: 'shift' }], ['key_up', { key: 'shift' }]);
    expect(combo.res).toMatchObject({ ok: true, data: { pressed: ['ctrl+shift+t'] } });
    expect(down.res.data).toEqual({ held: 1 });
    expect(up.res.data).toEqual({ held: 0 });
  });
});
