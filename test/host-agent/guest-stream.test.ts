import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { GuestClient, GuestError } from '../../host-agent/guest-client.ts';
import type { GuestProcess } from '../../host-agent/guest-process.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, guestSocket, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;
let client: GuestClient;

/** Collects a process's output per stream. */
function collect(proc: GuestProcess): Record<string, Buffer[]> {
  const out: Record<string, Buffer[]> = {};
  proc.on('output', (stream, data) => (out[stream] ??= []).push(data));
  return out;
}
const text = (chunks: Buffer[] | undefined) => Buffer.concat(chunks ?? []).toString('utf8');

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Stream Box', env: { FROM_SPEC: 'yes' } });
  client = await GuestClient.connect(guestSocket(spec.id));
});

afterAll(async () => {
  client?.close();
  await computers?.destroyAll();
  await driver?.close();
});

describe('guest agent: spawned processes', () => {
  it('with output_limit sends at most that much of each stream, drops the rest without blocking the process, and says truncated', async () => {
    const p = client.spawn({ command: 'head -c 300000 /dev/zero; echo err >&2; head -c 10 /dev/zero >&2', output_limit: 1000, window: 64 * 1024 });
    const out = collect(p);
    await p.started;
    expect(await p.exited).toMatchObject({ exit_code: 0, truncated: true });
    expect(Buffer.concat(out.stdout ?? []).length).toBe(1000);
    expect(Buffer.concat(out.stderr ?? []).length).toBe(14);
    const whole = client.spawn({ command: 'echo small', output_limit: 1000 });
    const wout = collect(whole);
    expect(await whole.exited).toMatchObject({ exit_code: 0, truncated: false });
    expect(text(wout.stdout)).toBe('small\n');
  });

  it('streams stdout and stderr separately and reports the exit', async () => {
    const p = client.spawn({ command: 'echo out; echo err >&2; echo $FROM_SPEC; exit 3' });
    const out = collect(p);
    await p.started;
    expect(await p.exited).toMatchObject({ exit_code: 3, signal: null, timed_out: false });
    expect(text(out.stdout)).toBe('out\nyes\n');
    expect(text(out.stderr)).toBe('err\n');
  });

  it('passes a megabyte paste through stdin intact, with bounded acknowledgements', async () => {
    const data = randomBytes(3 << 20);
    const p = client.spawn({
      argv: ['python3', '-c', 'import sys, hashlib; d = sys.stdin.buffer.read(); print(hashlib.sha256(d).hexdigest(), len(d))'],
    });
    const out = collect(p);
    await p.write(data);
    await p.closeStdin();
    await p.exited;
    const want = createHash('sha256').update(data).digest('hex');
    expect(text(out.stdout)).toBe(`${want} ${data.length}\n`);
  });

  it('skips stdin it already took when a write is sent again from an earlier offset, and refuses one past a gap', async () => {
    const p = client.spawn({ argv: ['cat'] });
    const out = collect(p);
    await p.started;
    await p.write('hello ', 0);
    // Resent after a lost answer: the first six bytes are skipped, the rest is new.
    await p.write('hello world\n', 0);
    await p.write('world\n', 6); // all of it taken before: nothing is written
    // The guest's own words stay out of the message (they are the tenant's), kept for the agent's log.
    await expect(p.write('later\n', 40)).rejects.toMatchObject({ code: 'BAD_REQUEST', guestText: expect.stringMatching(/offset 40/) });
    await p.write('bye\n', 12);
    await p.closeStdin();
    await p.exited;
    expect(text(out.stdout)).toBe('hello world\nbye\n');
  });

  it('holds stdin writes to a process that does not read, instead of buffering without bound', async () => {
    const p = client.spawn({ command: 'sleep 30' });
    await p.started;
    let settled = false;
    const writing = p.write(Buffer.alloc(2 << 20, 120)).finally(() => (settled = true));
    writing.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe(false); // the pipe (64 KiB) is full and the window stops the rest on our side
    // A host that ignores the window is refused past the guest's limit rather than growing it.
    const flood = Array.from({ length: 6 }, () =>
      client.request({ op: 'stdin', proc: p.id }, { payload: Buffer.alloc(1 << 20) }).then(
        () => 'ok',
        (e: GuestError) => e.code,
      ),
    );
    await p.signal(9);
    const codes = await Promise.all(flood);
    expect(codes).toContain('BUSY');
    await expect(writing).rejects.toBeInstanceOf(GuestError);
  });

  it('runs a real terminal: size, resize, input and job-control signals', async () => {
    const p = client.spawn({ argv: ['/bin/bash', '--norc', '-i'], pty: { rows: 30, cols: 100 } });
    const out = collect(p);
    await p.started;
    await p.write('stty size; tty\n');
    // `tty` prints after `stty size`: wait for both lines, not just the first.
    await until(() => /30 100[\s\S]*\/dev\/pts\/\d+/.test(text(out.pty)));
    await p.resize(40, 120);
    await p.write('stty size\n');
    await until(() => /40 120/.test(text(out.pty)));
    await p.write('sleep 100\n');
    await new Promise((r) => setTimeout(r, 300));
    await p.write('\x03'); // ^C through the terminal interrupts the foreground job only
    await p.write('echo after-interrupt; exit 5\n');
    expect((await p.exited).exit_code).toBe(5);
    expect(text(out.pty)).toContain('after-interrupt');
  });

  it('sends no more than the window beyond the last acknowledgement, and resumes on ack', async () => {
    const window = 256 * 1024;
    const total = 4 << 20;
    const p = client.spawn({ command: `head -c ${total} /dev/zero; echo done >&2`, window, stdin: false });
    let received = 0;
    p.on('output', (stream, data) => {
      if (stream === 'stdout') received += data.length;
    });
    await p.started;
    await new Promise((r) => setTimeout(r, 500));
    // Held at the window (plus at most one read): the process is blocked on its pipe meanwhile.
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThanOrEqual(window + 64 * 1024);
    expect(p.exit).toBeNull();
    while (!p.exit) {
      await p.ack();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(received).toBe(total);
    expect(p.exit).toMatchObject({ exit_code: 0 });
  });

  it('runs commands through the requested shell, with stdin at EOF when not asked for', async () => {
    const p = client.spawn({ command: 'echo $0; cat; echo eof', shell: '/bin/sh', stdin: false });
    const out = collect(p);
    expect((await p.exited).exit_code).toBe(0);
    expect(text(out.stdout)).toBe('/bin/sh\neof\n');
  });

  it('delivers signals to the process', async () => {
    const p = client.spawn({ command: 'sleep 100' });
    await p.started;
    await p.signal(15);
    expect(await p.exited).toMatchObject({ exit_code: 143, signal: 15, timed_out: false });
  });

  it('times out spawned processes with 124', async () => {
    const p = client.spawn({ command: 'sleep 100', timeout_s: 0.3 });
    expect(await p.exited).toMatchObject({ exit_code: 124, timed_out: true });
  });

  it('keeps running when the connection drops, and resumes output from an offset without gaps or repeats', async () => {
    const first = await GuestClient.connect(guestSocket(spec.id));
    const p = first.spawn({ command: 'for i in $(seq 1 40); do echo line$i; sleep 0.02; done' });
    const seen: Buffer[] = [];
    p.on('output', (_s, d) => seen.push(d));
    await until(() => text(seen).includes('line5\n'));
    first.close();
    await new Promise((r) => setTimeout(r, 200)); // output keeps coming while nobody listens

    const second = await GuestClient.connect(guestSocket(spec.id));
    try {
      const listed = await second.list();
      const info = listed.find((x) => x.proc === p.id);
      expect(info).toBeDefined();
      const again = second.attach(p.id, p.offsets);
      again.on('output', (_s, d) => seen.push(d));
      await again.started;
      await again.exited;
      const expected = Array.from({ length: 40 }, (_, i) => `line${i + 1}\n`).join('');
      expect(text(seen)).toBe(expected);
    } finally {
      second.close();
    }
  });

  it('rejects requests for unknown processes with NOT_FOUND', async () => {
    const p = client.attach('no-such-proc');
    await expect(p.started).rejects.toBeInstanceOf(GuestError);
    await expect(p.started).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
