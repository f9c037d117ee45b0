/**
 * The guest channel of a VM (virtio-serial, QEMU's socket on the host, the
 * same guest protocol as a sandbox's unix socket): bytes arrive intact in
 * both directions, a streamed process outlives a dropped host connection and
 * is re-attached from its offsets, TCP reaches servers inside the VM (what
 * the relay uses for ports and desktops), and a guest agent killed inside is
 * brought back by the VM's init.
 */
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { StreamProcess } from '../../host-agent/drivers/driver.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { Computers, VM, newVmDriver, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let spec: ComputerSpec;
const sh = (command: string, timeout_s = 120) => shIn(driver, spec.id)(command, timeout_s);

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ ...VM, name: 'Channel Box' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Collects a streamed process's output (acknowledging it) until it exits. */
function collect(proc: StreamProcess): { chunks: Buffer[]; exited: Promise<number> } {
  const chunks: Buffer[] = [];
  const offsets: Record<string, number> = {};
  proc.on('output', (stream, data, offset) => {
    chunks.push(Buffer.from(data));
    offsets[stream] = offset + data.length;
    void proc.ack(offsets).catch(() => undefined);
  });
  const exited = new Promise<number>((resolve) => proc.once('exit', (e) => resolve(e.exit_code)));
  return { chunks, exited };
}

describe('the guest channel of a VM', () => {
  it('carries stdin in and several MiB of output out, byte for byte', async () => {
    const input = Array.from({ length: 3 << 18 }, (_, i) => String.fromCharCode(33 + ((i * 7 + (i >> 9)) % 90))).join('').repeat(4);
    const r = await driver.exec(spec.id, {
      command: 'sha256sum | cut -c1-64; head -c 4000000 /dev/zero | tr "\\0" "x" | sha256sum | cut -c1-64',
      timeout_s: 120,
      max_output_bytes: 1 << 20,
      stdin: input,
    });
    expect(r.output.split('\n')[0]).toBe(sha(Buffer.from(input)));
    expect(r.output.split('\n')[1]).toBe(sha(Buffer.alloc(4_000_000, 'x')));

    const proc = await driver.spawn(spec.id, { proc_id: 'big', command: 'head -c 6000000 /dev/urandom | tee /tmp/big | sha256sum >/tmp/big.sha; cat /tmp/big', stdin: false }, 1 << 20);
    const { chunks, exited } = collect(proc);
    expect(await exited).toBe(0);
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(6_000_000);
    expect(sha(got)).toBe((await sh('cut -c1-64 /tmp/big.sha')).output.trim());
  });

  it('a streamed process keeps running while the host connection is down and is re-attached from its offsets', async () => {
    const proc = await driver.spawn(spec.id, { proc_id: 'ticker', command: 'for i in $(seq 1 40); do echo line-$i; sleep 0.1; done', stdin: false }, 1 << 20);
    let seen = '';
    proc.on('output', (_s, data, offset) => {
      seen = seen.slice(0, offset) + data.toString();
      void proc.ack({ stdout: offset + data.length }).catch(() => undefined);
    });
    await expect.poll(() => seen.includes('line-3'), { timeout: 30_000 }).toBe(true);
    // The agent goes away (a restart): its connection closes; the process goes on inside.
    await driver.close();
    driver = newVmDriver();
    const again = await driver.attach(spec.id, 'ticker', { stdout: seen.length }, 1 << 20);
    expect(again).not.toBeNull();
    let rest = '';
    again!.on('output', (_s, data, offset) => {
      rest += data.toString();
      void again!.ack({ stdout: offset + data.length }).catch(() => undefined);
    });
    const exit = await new Promise<number>((resolve) => again!.once('exit', (e) => resolve(e.exit_code)));
    expect(exit).toBe(0);
    const all = seen + rest;
    expect(all.trim().split('\n')).toEqual(Array.from({ length: 40 }, (_, i) => `line-${i + 1}`));
  });

  it('TCP connections reach servers inside the VM in both directions (what ports and desktops ride on)', async () => {
    await sh(`cat > /tmp/echo.py <<'EOF'
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 7100)); s.listen(8)
def echo(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
open("/tmp/echo.ready", "w").write("ok")
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
EOF
nohup python3 /tmp/echo.py >/dev/null 2>&1 &
for i in $(seq 100); do [ -e /tmp/echo.ready ] && break; sleep 0.1; done; cat /tmp/echo.ready`);
    const conn: Duplex = await driver.connectTcp(spec.id, 7100);
    const payload = Buffer.alloc(2 << 20);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    const received: Buffer[] = [];
    conn.on('data', (d: Buffer) => received.push(d));
    const ended = new Promise<void>((resolve) => conn.once('end', resolve));
    conn.end(payload);
    await ended;
    expect(sha(Buffer.concat(received))).toBe(sha(payload));
    // The stream comes back at once, still connecting; a refusal arrives as its error.
    const refused = await driver.connectTcp(spec.id, 7199);
    await expect(new Promise((resolve, reject) => refused.once('error', reject).once('connect', resolve))).rejects.toThrow(/nothing is listening on port 7199/);
  });

  // The guest names itself hangar-guest (its processes are forked from it: the oldest is the guest).
  it('a guest agent killed inside the VM is started again by its init, and the host reconnects', async () => {
    const before = (await sh('pgrep -o -x hangar-guest')).output.trim();
    expect(before).toMatch(/^\d+$/);
    // Killing the agent ends this very exec's connection too.
    await sh('sudo kill -9 ' + before).catch(() => undefined);
    await expect
      .poll(async () => (await sh('pgrep -o -x hangar-guest').catch(() => ({ output: '' }))).output.trim(), { timeout: 60_000, interval: 500 })
      .toMatch(/^\d+$/);
    const after = (await sh('pgrep -o -x hangar-guest; echo ok')).output.trim().split('\n');
    expect(after[0]).not.toBe(before);
    expect(after[1]).toBe('ok');
    expect(await driver.state(spec.id)).toBe('running');
  });
});
