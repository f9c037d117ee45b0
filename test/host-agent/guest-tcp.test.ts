/**
 * TCP connections made by a computer's guest inside the computer (guest ops
 * tcp_*), as the host sees them (driver.connectTcp), and the whole agent side
 * of the relay on top of them: real sandboxes, real servers inside.
 */
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { RelayTargetError } from '../../host-agent/relay/target-error.ts';
import { readableOf, pumpInto } from '../../durable-objects/relay/readable.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';
import { relayPair, type RelayPair } from './relay-pair.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;

const sh = async (command: string, timeout_s = 60) => {
  const r = await driver.exec(spec.id, { command, timeout_s, max_output_bytes: 1 << 20 });
  if (r.exit_code !== 0) throw new Error(`${command} failed (${r.exit_code}): ${r.output}`);
  return r.output;
};

/** Servers inside the computer, one per port (see each). */
const SERVERS = String.raw`
import hashlib, os, socket, sys, threading

def serve(family, addr, handle):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(64)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def echo(c):
    # Echoes until the client's FIN, then closes its own side.
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    c.close()

def firehose(c):
    # Sends 64 MiB of pseudo-random bytes, noting its progress and finally the sha256 of all of it.
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    sent = 0
    for i in range(64):
        piece = hashlib.sha256(bytes([i])).digest() + block[32:]
        c.sendall(piece)
        h.update(piece)
        sent += len(piece)
        with open('/tmp/firehose.progress', 'w') as f:
            f.write(str(sent))
    with open('/tmp/firehose.sha', 'w') as f:
        f.write(h.hexdigest())
    c.close()

def resetter(c):
    c.recv(10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    c.close()

serve(socket.AF_INET, ('127.0.0.1', 7000), echo)
serve(socket.AF_INET, ('0.0.0.0', 7001), firehose)
serve(socket.AF_INET6, ('::1', 7002), echo)
serve(socket.AF_INET, ('127.0.0.1', 7003), resetter)
open('/tmp/servers.ready', 'w').write('ok')
threading.Event().wait()
`;

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Tcp Box' });
  await sh(`cat > /tmp/servers.py <<'EOF'\n${SERVERS}\nEOF\nnohup python3 /tmp/servers.py >/tmp/servers.log 2>&1 &\nfor i in $(seq 100); do test -e /tmp/servers.ready && exit 0; sleep 0.1; done; cat /tmp/servers.log; exit 1`);
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function collect(sock: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.on('end', () => resolve(Buffer.concat(parts)));
    sock.on('error', reject);
  });
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('TCP connections inside a computer', () => {
  it('takes bytes before the connection is made, and delivers them once it is', async () => {
    const sock = await driver.connectTcp(spec.id, 7000);
    expect((sock as Duplex & { pending: boolean }).pending).toBe(true);
    const back = collect(sock);
    sock.end('written while connecting');
    expect((await back).toString()).toBe('written while connecting');
  });

  it('carries bytes both ways unchanged, with a FIN each way', async () => {
    const sock = await driver.connectTcp(spec.id, 7000);
    const data = createHash('sha512').update('seed').digest();
    const big = Buffer.concat(Array.from({ length: 40_000 }, (_, i) => Buffer.concat([data, Buffer.from([i & 0xff])])));
    const back = collect(sock);
    sock.end(big);
    const got = await back;
    expect(got.length).toBe(big.length);
    expect(sha(got)).toBe(sha(big));
  });

  it('reaches a server that listens on ::1 only', async () => {
    const sock = await driver.connectTcp(spec.id, 7002);
    const back = collect(sock);
    sock.end('over ipv6');
    expect((await back).toString()).toBe('over ipv6');
  });

  it('a port nobody listens on is refused; a stopped computer is unreachable', async () => {
    // The stream comes back at once, still connecting; the refusal is its error.
    const refused = await driver.connectTcp(spec.id, 7999);
    const err = await new Promise<unknown>((resolve) => refused.once('error', resolve));
    expect(err).toBeInstanceOf(RelayTargetError);
    expect((err as RelayTargetError).code).toBe('refused');
    const other = await computers.create({ name: 'Stopped Box' });
    await driver.stop(other.id);
    const away = await driver.connectTcp(other.id, 7000).catch((e: unknown) => e);
    expect((away as RelayTargetError).code).toBe('unreachable');
  });

  it('an app that resets the connection errors the stream with reset', async () => {
    const sock = await driver.connectTcp(spec.id, 7003);
    const failed = new Promise<Error>((resolve) => sock.on('error', resolve));
    sock.on('data', () => {});
    sock.write('hello');
    const err = await failed;
    expect(err).toBeInstanceOf(RelayTargetError);
    expect((err as RelayTargetError).code).toBe('reset');
  });

  it('a reader that stops reading stops the app: the guest reads no further than its window', async () => {
    const sock = await driver.connectTcp(spec.id, 7001);
    sock.pause();
    const progress = async () => Number((await sh('cat /tmp/firehose.progress 2>/dev/null || echo 0')).trim());
    await until(async () => (await progress()) > 0, 'the app to start sending');
    await new Promise((r) => setTimeout(r, 1500));
    const stalled = await progress();
    // 64 MiB to send; held back by our window (512 KiB) plus the kernel's socket buffers.
    expect(stalled).toBeLessThan(24 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 500));
    expect(await progress()).toBe(stalled);
    const all = collect(sock);
    sock.resume();
    const got = await all;
    expect(got.length).toBe(64 * 1024 * 1024);
    expect(sha(got)).toBe((await sh('cat /tmp/firehose.sha')).trim());
  });
});

describe('the agent relay to ports inside a computer', () => {
  let pair: RelayPair;
  beforeAll(async () => {
    pair = await relayPair({ computer_tcp: (t) => driver.connectTcp(spec.id, t.port) });
  });
  afterAll(async () => pair?.close());

  it('relays a raw stream to a port inside the computer and back', async () => {
    const r = pair.mux.open({ kind: 'computer_tcp', port: 7000 });
    if (!r.ok) throw new Error(r.message);
    const s = r.value;
    expect(await s.accepted).toBeNull();
    const payload = new Uint8Array(5 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < payload.length; at += 100_000) c.enqueue(payload.subarray(at, at + 100_000));
        c.close();
      },
    });
    const chunks: Uint8Array[] = [];
    const [sent] = await Promise.all([
      pumpInto(body, s),
      (async () => {
        for await (const c of readableOf(s)) chunks.push(c);
      })(),
    ]);
    expect(sent.kind).toBe('done');
    expect(sha(Buffer.concat(chunks))).toBe(sha(payload));
    expect(await s.done).toBeNull();
  });

  it('relays an HTTP exchange to a server inside the computer', async () => {
    await sh(`mkdir -p /tmp/www && head -c 3000000 /dev/urandom > /tmp/www/blob.bin && (cd /tmp/www && nohup python3 -m http.server 7010 --bind 127.0.0.1 >/dev/null 2>&1 &) && for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7010) 2>/dev/null && exit 0; sleep 0.1; done; exit 1`);
    const r = pair.mux.open({ kind: 'computer_tcp', port: 7010 }, { http: { method: 'GET', path: '/blob.bin', headers: [['Host', 'preview.test']], websocket: false } });
    if (!r.ok) throw new Error(r.message);
    const s = r.value;
    s.closeWrite();
    const head = await s.response;
    expect(head?.status).toBe(200);
    const chunks: Uint8Array[] = [];
    for await (const c of readableOf(s)) chunks.push(c);
    const expected = (await sh('sha256sum /tmp/www/blob.bin')).split(' ')[0];
    expect(sha(Buffer.concat(chunks))).toBe(expected);
  });

  it('a port nobody listens on in the computer is refused', async () => {
    const r = pair.mux.open({ kind: 'computer_tcp', port: 7998 });
    expect(r.ok && (await r.value.accepted)).toMatchObject({ code: 'refused' });
  });
});
