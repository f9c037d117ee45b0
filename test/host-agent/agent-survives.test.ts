/**
 * The agent never dies of what a tenant sends. A real agent process serves
 * two real computers for a scripted control plane, which sends what the
 * Durable Objects never would: the environment that used to end the agent,
 * requests too large for the computer's agent, garbage of every kind; and one
 * computer's guest is replaced by one that answers garbage. Each failure
 * answers its own request, and the agent keeps serving the other computer.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { encodeDiskFrame, encodeFrame as encodeWireFrame, FRAME_STDIN } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { computerPaths } from '../../host-agent/drivers/sandbox/paths.ts';
import { encodeFrame, FrameDecoder } from '../../host-agent/guest-frames.ts';
import { startAgent, type AgentHandle } from '../../scripts/local-stack.ts';
import { useSharedTemplates } from '../shared-template.ts';
import { ScriptedControlPlane, type ComputerLink } from './control-plane.ts';

const A = randomUUID();
const B = randomUUID();
const spec = (id: string, env: Record<string, string> = {}): ComputerSpec => ({
  id, name: 'survivor', template: 'miosa-desktop', size: 'small', vcpus: 1, memory_mb: 4096, selected_apps: [], env,
});
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let dataDir: string;
let plane: ScriptedControlPlane;
let origin: string;
let agent: AgentHandle;
let agentLog = '';

const start = () => startAgent({ origin, hostKey: 'hk_scripted_control_plane', dataDir, log: (s) => (agentLog += s) });

async function exec(link: ComputerLink, command: string) {
  return link.request({ type: 'exec.run', params: { command, timeout_s: 30, max_output_bytes: 1 << 20 } });
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-survives-'));
  useSharedTemplates(dataDir);
  plane = new ScriptedControlPlane([A, B]);
  origin = await plane.listen();
  agent = await start();
  for (const id of [A, B]) {
    const link = await plane.link(id);
    await link.attached();
    const r = await link.request({ type: 'computer.provision', spec: spec(id) }, 300_000);
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true, data: { state: 'running' } });
  }
});

afterAll(async () => {
  await agent?.stop();
  const driver = new SandboxDriver({ dataDir });
  for (const id of await driver.list()) await driver.destroy(id).catch(() => undefined);
  await driver.close();
  await driver.releaseStorage(); // unmounts the disk pool of this data dir, if it has one
  await plane?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('a host agent fed what no control plane should send', () => {
  it('the crashing inputs fail alone, each with a clear error, and the agent serves every computer after', async () => {
    const a = await plane.link(A);
    const b = await plane.link(B);

    // 45 variables of 32 KiB: the input that used to end the agent (and, re-applied at boot, every agent after).
    const env = Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`K${i}`, 'x'.repeat(32 * 1024)]));
    const setenv = await a.request({ type: 'computer.env', env });
    expect(setenv).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(setenv.ok === false && setenv.error.message).toMatch(/environment over the limits/);
    const boot = await a.request({ type: 'computer.start', spec: { ...spec(A), env } });
    expect(boot).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });

    // Within the protocol's bounds, but past what one frame to the computer's agent holds once escaped.
    const spawn = await a.request({ type: 'proc.start', params: { proc_id: 'toolarge', argv: ['/bin/echo', '\u0001'.repeat(200 * 1024)], stdin: false } });
    expect(spawn).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(spawn.ok === false && spawn.error.message).toMatch(/too large for the computer's agent/);
    const stdin = await a.request({ type: 'exec.run', params: { command: 'cat', stdin: 'x'.repeat(2 << 20), timeout_s: 5, max_output_bytes: 1024 } });
    expect(stdin).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });

    // Garbage: not JSON, JSON of no request, an unknown type, binary frames of no kind, a stdin flood for no process.
    a.raw('{"type": "exec.run", "id": ');
    a.raw(JSON.stringify({ type: 'proc.ack', proc_id: '../../etc', offsets: { stdout: -1 } }));
    a.raw(Buffer.from([0xff, 0x00, 0x01]));
    a.raw(Buffer.from(encodeWireFrame({ kind: FRAME_STDIN, stream: 'stdout', proc_id: 'nobody', offset: 0, payload: new Uint8Array(8 << 20) })));
    a.raw(Buffer.from(encodeDiskFrame({ transfer_id: 'nothing', offset: 0, payload: new Uint8Array(1024) })));
    a.raw('x'.repeat(32 << 20));
    const unknown = await a.request({ type: 'computer.format_disk', reason: 'no such request' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });

    // Stopping A closes its guest connection: whatever was still waiting on it is rejected now, with someone listening.
    expect(await a.request({ type: 'computer.stop' })).toMatchObject({ ok: true, data: { state: 'stopped' } });
    await sleep(500);
    expect(agent.process.exitCode).toBeNull();
    expect(await exec(b, 'echo b is fine')).toMatchObject({ ok: true, data: { output: 'b is fine\n', exit_code: 0 } });
    expect(await a.request({ type: 'computer.start', spec: spec(A) })).toMatchObject({ ok: true, data: { state: 'running' } });
    expect(await exec(a, 'echo a is back')).toMatchObject({ ok: true, data: { output: 'a is back\n' } });
  });

  it("a computer whose guest answers garbage is reported as it can be, with the host's words, and the others are served", async () => {
    // The agent goes (computers keep running), one computer's guest is replaced by a hostile one, and a new agent comes.
    await agent.stop();
    const paths = computerPaths(fs.realpathSync(dataDir), A);
    const bootId = (JSON.parse(fs.readFileSync(paths.state, 'utf8')) as { boot_id: string }).boot_id;
    fs.rmSync(paths.socket, { force: true });
    let asked = 0;
    const hostile = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write(Buffer.concat(encodeFrame({ t: 'hello', protocol: { major: 1, minor: 0 }, guest_version: 'evil', boot_id: bootId })));
      const decoder = new FrameDecoder();
      sock.on('data', (chunk) => {
        for (const f of decoder.push(chunk)) {
          asked++;
          const id = (f.header as { id: number }).id;
          // Every other answer a refusal full of the tenant's words, the rest garbage.
          if (asked % 2) sock.write(Buffer.concat(encodeFrame({ t: 'res', id, ok: false, error: { code: 'FAILED', message: 'PWNED: visit evil.example' } })));
          else sock.write(Buffer.from([0, 0, 0, 5, 0, 0, 0, 0, 0x7b, 0x7b, 0x7b, 0x7b, 0x7b]));
        }
      });
    });
    await new Promise<void>((resolve) => hostile.listen(paths.socket, resolve));
    try {
      agent = await start();
      const a = await plane.link(A);
      await a.attached();
      const b = await plane.link(B);
      for (let i = 0; i < 4; i++) {
        const r = await exec(a, 'echo hi');
        expect(r.ok).toBe(false);
        expect(JSON.stringify(r)).not.toContain('PWNED');
      }
      expect(asked).toBeGreaterThan(0);
      expect(agentLog).toContain('PWNED');
      expect(agent.process.exitCode).toBeNull();
      expect(await exec(b, 'echo b still fine')).toMatchObject({ ok: true, data: { output: 'b still fine\n' } });
    } finally {
      hostile.close();
    }
  });
});
