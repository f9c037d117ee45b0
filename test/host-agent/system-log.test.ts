/** A computer's system log on its host: the boot, the guest agent, and the driver's notes of out-of-memory kills and exits. */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;

async function logUntil(id: string, re: RegExp, ms = 30_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const file = driver.systemLog(id);
    const text = file && fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (re.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`no ${re} in the log within ${ms} ms:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe("a computer's system log", () => {
  it('has the boot, the guest agent and the driver\'s own notes', async () => {
    const spec = await computers.create({ name: 'Log Box' });
    driver.logLine(spec.id, 'a note');
    const text = await logUntil(spec.id, /hangar-agent: a note/);
    expect(text).toMatch(/--- boot .*\n(.*\n)*hangar-guest: listening/);
  });

  it('says when the kernel killed a process for memory, and that the computer went on', async () => {
    const spec = await computers.create({ name: 'Small Box', memory_mb: 128 });
    const r = await driver.exec(spec.id, { command: "python3 -c 'b = bytearray(400 * 1024 * 1024); print(len(b))'", timeout_s: 60, max_output_bytes: 4096 });
    expect(r.exit_code).toBe(137);
    await logUntil(spec.id, /hangar-agent: out of memory: the kernel killed a process in this computer \(memory limit 128 MiB\)/);
    expect(await driver.state(spec.id)).toBe('running');
  });
});
