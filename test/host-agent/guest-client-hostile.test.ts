/**
 * The host's guest client against what it cannot trust: requests too large
 * for the guest are refused before they are sent (against a real guest in a
 * real computer), and a guest that answers garbage — the tenant is root
 * where it runs — fails only its own requests, with the host's words. Any
 * promise left to reject with nobody listening fails this file (vitest
 * reports unhandled rejections), as it would end the agent.
 */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../../schema/guest.ts';
import { GuestClient, GuestError } from '../../host-agent/guest-client.ts';
import { FrameDecoder, encodeFrame } from '../../host-agent/guest-frames.ts';
import type { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, guestSocket, newDriver, prepareTemplate } from './sandbox-fixture.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<GuestError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof GuestError)) throw new Error(`expected a GuestError, got ${String(err)}`);
  return err;
}

describe('requests too large for the guest (a real guest in a real computer)', () => {
  let driver: SandboxDriver;
  let computers: Computers;
  let spec: ComputerSpec;

  beforeAll(async () => {
    driver = newDriver();
    await prepareTemplate(driver);
    computers = new Computers(() => driver);
    spec = await computers.create({ name: 'Limits Box' });
  });

  afterAll(async () => {
    await computers?.destroyAll();
    await driver?.close();
  });

  it('are refused at once, alone, and the connection keeps serving; closing it later rejects nothing unheard', async () => {
    const client = await GuestClient.connect(guestSocket(spec.id));
    // 45 variables of 32 KiB: the environment that used to end the agent.
    const env = Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`K${i}`, 'x'.repeat(32 * 1024)]));
    const setenv = await rejection(client.setEnv(env));
    expect(setenv.code).toBe('BAD_REQUEST');
    expect(setenv.message).toMatch(new RegExp(`setenv request is too large for the computer's agent: its header is \\d+ bytes \\(at most ${MAX_HEADER_BYTES}\\)`));
    const stdin = await rejection(client.exec({ command: 'cat', timeout_s: 5, max_output_bytes: 1024 }, new Uint8Array(MAX_PAYLOAD_BYTES + 1)));
    expect(stdin.message).toMatch(/exec request is too large.*payload/);
    // Escaping makes a header grow: control characters take six bytes each in JSON.
    const argv = ['/bin/echo', '\u0001'.repeat(200 * 1024)];
    const spawn = client.spawn({ argv });
    expect((await rejection(spawn.started)).message).toMatch(/spawn request is too large/);

    const r = await client.exec({ command: 'echo still here', timeout_s: 5, max_output_bytes: 1024 });
    expect(r.output.toString()).toBe('still here\n');
    client.close();
    // Had a refused request left a reply waiting, closing would reject it now with nobody listening.
    await sleep(50);
  });
});

/** A scripted guest on a unix socket: says hello (or not), then answers each request as the test says. */
class HostileGuest {
  readonly path: string;
  private readonly server: net.Server;
  private readonly dir: string;
  answer: (req: { id: number; op: string }, sock: net.Socket) => void = () => {};

  constructor(hello: object | Buffer = { t: 'hello', protocol: { major: 1, minor: 0 }, guest_version: 'hostile', boot_id: 'b' }) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'hostile-guest-'));
    this.path = path.join(this.dir, 'guest.sock');
    this.server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write(Buffer.isBuffer(hello) ? hello : Buffer.concat(encodeFrame(hello)));
      const decoder = new FrameDecoder();
      sock.on('data', (chunk) => {
        for (const f of decoder.push(chunk)) this.answer(f.header as { id: number; op: string }, sock);
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  close(): void {
    this.server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const frame = (header: object, payload?: Uint8Array) => Buffer.concat(encodeFrame(header, payload));
const rawFrame = (headerBytes: Buffer) => {
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(headerBytes.length, 0);
  return Buffer.concat([prefix, headerBytes]);
};

describe('a guest that answers garbage', () => {
  let guest: HostileGuest;

  beforeAll(async () => {
    guest = new HostileGuest();
    await guest.listen();
  });

  afterAll(() => guest.close());

  it('a reply of the wrong shape fails that request only', async () => {
    const client = await GuestClient.connect(guest.path);
    let first = true;
    guest.answer = (req, sock) => {
      sock.write(frame({ t: 'res', id: req.id, ok: true, data: first ? { uptime_s: 'not a number' } : { uptime_s: 1 } }));
      first = false;
    };
    expect((await rejection(client.ping())).code).toBe('PROTOCOL');
    expect((await client.ping()).data).toEqual({ uptime_s: 1 });
    client.close();
  });

  it("the guest's own error text is kept from the message (for the log only)", async () => {
    const client = await GuestClient.connect(guest.path);
    const text = "Traceback: KeyError('command') at /usr/lib/hangar/evil.py — call +1-555-PHISH";
    guest.answer = (req, sock) => sock.write(frame({ t: 'res', id: req.id, ok: false, error: { code: 'BAD_REQUEST', message: text } }));
    const err = await rejection(client.exec({ command: 'x', timeout_s: 1, max_output_bytes: 10 }));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).not.toContain('KeyError');
    expect(err.message).not.toContain('PHISH');
    expect(err.message).toMatch(/could not start the command/);
    expect(err.guestText).toBe(text);
    client.close();
  });

  it('replies to unknown requests and events of unknown processes are ignored', async () => {
    const client = await GuestClient.connect(guest.path);
    guest.answer = (req, sock) => {
      sock.write(frame({ t: 'res', id: 999_999, ok: true, data: {} }));
      sock.write(frame({ t: 'evt', ev: 'output', proc: 'nobody', stream: 'stdout', offset: 0 }, Buffer.from('x')));
      sock.write(frame({ t: 'evt', ev: 'exit', proc: 'nobody', exit_code: 0, signal: null, timed_out: false, duration_ms: 1 }));
      sock.write(frame({ t: 'res', id: req.id, ok: true, data: { uptime_s: 2 } }));
    };
    expect((await client.ping()).data).toEqual({ uptime_s: 2 });
    expect(client.closed).toBe(false);
    client.close();
  });

  for (const [what, bytes] of [
    ['a header that is not JSON', rawFrame(Buffer.from('{"t":"res","id":1,'))],
    ['a frame that is no frame of the protocol', frame({ t: 'res', id: 'one', ok: 'yes' })],
    ['a length past the limits', (() => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(16, 0);
      b.writeUInt32BE(0xffffffff, 4);
      return b;
    })()],
  ] as const) {
    it(`${what}: the connection is dropped and every waiting request fails, each heard`, async () => {
      const client = await GuestClient.connect(guest.path);
      guest.answer = (_req, sock) => sock.write(bytes);
      const waiting = [client.ping(), client.ping(), client.list()].map((p) => rejection(p));
      for (const err of await Promise.all(waiting)) expect(['DISCONNECTED', 'PROTOCOL']).toContain(err.code);
      expect(client.closed).toBe(true);
      expect((await rejection(client.ping())).code).toBe('DISCONNECTED');
    });
  }

  it('a request that is never answered times out on its own; closing after rejects nothing unheard', async () => {
    const client = await GuestClient.connect(guest.path);
    guest.answer = () => undefined;
    expect((await rejection(client.ping(200))).code).toBe('TIMEOUT');
    const pending = rejection(client.list());
    client.close();
    expect((await pending).code).toBe('DISCONNECTED');
    await sleep(50);
  });

  it('a hello that is not one is refused at connect', async () => {
    const bad = new HostileGuest({ t: 'hello', protocol: { major: 9, minor: 0 }, guest_version: 'x', boot_id: 'b' });
    await bad.listen();
    try {
      expect((await rejection(GuestClient.connect(bad.path))).code).toBe('PROTOCOL');
    } finally {
      bad.close();
    }
    const garbage = new HostileGuest(rawFrame(Buffer.from('not json')));
    await garbage.listen();
    try {
      await expect(GuestClient.connect(garbage.path)).rejects.toThrow(/not JSON/);
    } finally {
      garbage.close();
    }
  });
});
