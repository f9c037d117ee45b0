/**
 * The agent's process relay over a real sandbox: what reaches the server
 * (binary output frames and JSON messages) after a start and after a
 * re-attach from the server's offsets.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrame, type ComputerAgentMessage, type ProcStartParams } from '../../schema/protocol.ts';
import { ProcRelay } from '../../host-agent/handlers/procs.ts';
import type { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let computerId: string;

/** What the relay sent to the server, per process: output bytes by stream and whether the exit came. */
class Server {
  readonly bytes = new Map<string, Buffer>();
  readonly exits = new Set<string>();

  outlet = {
    sendJson: (msg: ComputerAgentMessage): boolean => {
      if (msg.type === 'proc.exit') this.exits.add(msg.proc_id);
      return true;
    },
    sendBinary: (b: Uint8Array): boolean => {
      const f = decodeFrame(b)!;
      const key = `${f.proc_id}/${f.stream}@${f.offset}`;
      this.bytes.set(key, Buffer.from(f.payload));
      return true;
    },
  };

  /** The bytes of a stream from `from`, joined in offset order. */
  text(procId: string, stream = 'stdout', from = 0): string {
    const prefix = `${procId}/${stream}@`;
    return [...this.bytes.entries()]
      .filter(([k]) => k.startsWith(prefix) && Number(k.slice(prefix.length)) >= from)
      .sort(([a], [b]) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)))
      .map(([, v]) => v.toString())
      .join('');
  }

  clear(): void {
    this.bytes.clear();
    this.exits.clear();
  }
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const params = (command: string): ProcStartParams => ({ proc_id: randomBytes(8).toString('hex'), command, stdin: false });

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  computerId = (await computers.create({ name: 'Relay Box' })).id;
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('agent process relay', () => {
  it('a re-attach from the server offsets sends the bytes after them and the exit of a process that ended meanwhile', async () => {
    const server = new Server();
    const relay = new ProcRelay(driver, computerId, server.outlet, () => {});
    const p = params('echo one; echo two; echo three');
    await relay.start(p);
    await until(() => server.exits.has(p.proc_id), 'exit');
    expect(server.text(p.proc_id)).toBe('one\ntwo\nthree\n');

    // As after a reconnect: the server holds 'one\n' and asks for the rest.
    server.clear();
    await relay.attach(p.proc_id, { stdout: 4 });
    await until(() => server.exits.has(p.proc_id), 'exit after re-attach');
    expect(server.text(p.proc_id, 'stdout', 4)).toBe('two\nthree\n');
  });

  it('after the connection is lost nothing is relayed until the re-attach, which resumes without a gap', async () => {
    const server = new Server();
    const relay = new ProcRelay(driver, computerId, server.outlet, () => {});
    const p = params('for i in $(seq 1 30); do echo n$i; sleep 0.02; done');
    await relay.start(p);
    await until(() => server.text(p.proc_id).includes('n3\n'), 'first lines');
    relay.connectionLost();
    const held = server.text(p.proc_id);
    await new Promise((r) => setTimeout(r, 300));
    // A frame sent now would land on the next connection past what the server holds.
    expect(server.text(p.proc_id)).toBe(held);
    await relay.attach(p.proc_id, { stdout: Buffer.byteLength(held) });
    await until(() => server.exits.has(p.proc_id), 'exit');
    expect(server.text(p.proc_id)).toBe(Array.from({ length: 30 }, (_, i) => `n${i + 1}\n`).join(''));
  });

  it('with wait_exit_ms a short process is answered with its exit and small output, no frames and no proc.exit; more output goes in frames first; a long one as usual', async () => {
    const server = new Server();
    const relay = new ProcRelay(driver, computerId, server.outlet, () => {});
    const short = { ...params('echo quick; echo oops >&2; exit 3'), wait_exit_ms: 5000 };
    const answer = await relay.start(short);
    expect(answer.exit).toMatchObject({ exit_code: 3, timed_out: false });
    const inline = (answer.output ?? []).map((c) => `${c.stream}@${c.offset}:${Buffer.from(c.data, 'base64').toString()}`);
    expect(inline.sort()).toEqual(['stderr@0:oops\n', 'stdout@0:quick\n']);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.text(short.proc_id)).toBe('');
    expect(server.exits.has(short.proc_id)).toBe(false);

    // Past what an answer carries, output goes as frames — all of it, in order, before the answer.
    const big = { ...params('head -c 200000 /dev/zero | tr "\\0" x; echo; echo tail'), wait_exit_ms: 5000 };
    const bigAnswer = await relay.start(big);
    expect(bigAnswer.exit).toMatchObject({ exit_code: 0 });
    expect(bigAnswer.output ?? []).toEqual([]);
    expect(server.text(big.proc_id)).toBe(`${'x'.repeat(200000)}\ntail\n`);

    const long = { ...params('sleep 0.5; echo late'), wait_exit_ms: 50 };
    const first = await relay.start(long);
    expect(first.exit).toBeUndefined();
    await until(() => server.exits.has(long.proc_id), 'exit of the long one');
    expect(server.text(long.proc_id)).toBe('late\n');
  });

  it('output printed the instant a process starts reaches the server', async () => {
    const server = new Server();
    const relay = new ProcRelay(driver, computerId, server.outlet, () => {});
    const procs = Array.from({ length: 20 }, (_, i) => params(`echo first-${i}`));
    await Promise.all(procs.map((p) => relay.start(p)));
    await until(() => procs.every((p) => server.exits.has(p.proc_id)), 'exits');
    expect(procs.map((p) => server.text(p.proc_id))).toEqual(procs.map((_, i) => `first-${i}\n`));
  });
});
