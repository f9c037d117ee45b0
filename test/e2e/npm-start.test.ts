/**
 * `npm start` as a user runs it (scripts/dev.ts, a real process with its own
 * API, state and agent): a host agent that dies is started again by its
 * supervisor while the API keeps answering, and the agent that comes back
 * serves the computers the first one made. Ctrl-C stops both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { ROOT, freePort } from '../../scripts/local-stack.ts';
import { useSharedTemplates } from '../shared-template.ts';
import { Client } from './client.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let home: string | undefined;
let dev: ChildProcess | undefined;

afterAll(async () => {
  if (dev && dev.exitCode === null) {
    dev.kill('SIGINT');
    await new Promise((r) => dev!.once('exit', r));
  }
  if (home) {
    const driver = new SandboxDriver({ dataDir: path.join(home, 'data') });
    for (const id of await driver.list()) await driver.destroy(id).catch(() => undefined);
    await driver.close();
    await driver.releaseStorage(); // unmounts the disk pool of this data dir, if it has one
    fs.rmSync(home, { recursive: true, force: true });
  }
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start', () => {
  it('brings a killed host agent back with the API up all along, and the agent that comes back serves the computers', async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-npm-start-'));
    const dataDir = path.join(home, 'data');
    useSharedTemplates(dataDir);
    const port = await freePort();
    let out = '';
    dev = spawn(process.execPath, [path.join(ROOT, 'scripts', 'dev.ts')], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), HANGAR_HOME: home, HANGAR_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    dev.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp, what: string, ms = 300_000): Promise<RegExpMatchArray> => {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (dev!.exitCode !== null) throw new Error(`npm start exited (${dev!.exitCode}) before ${what}:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms:\n${out.slice(-3000)}`);
        await sleep(100);
      }
    };

    const firstPid = Number((await waitFor(/host agent running \(pid (\d+)\)/, 'agent'))[1]);
    await waitFor(/Hangar is running/, 'ready banner');
    const info = JSON.parse(fs.readFileSync(path.join(home, 'dev.json'), 'utf8')) as { api_url: string; api_key: string };
    const api = new Client(info.api_url, info.api_key);
    const id = await api.runningComputer('survives-its-agent');

    // The API keeps answering while the agent is gone and while it comes back.
    let probing = true;
    const answers: number[] = [];
    const probe = (async () => {
      while (probing) {
        answers.push((await fetch(`${info.api_url}/health`)).status);
        // About once a second: /health is a public route (60 a minute per address), and an agent that
        // also offers VMs takes a while to come back (it probes KVM with a boot first).
        await sleep(1100);
      }
    })();
    process.kill(firstPid, 'SIGKILL');
    const secondPid = Number((await waitFor(/host agent is running again \(pid (\d+)\)/, 'a restarted agent', 120_000))[1]);
    probing = false;
    await probe;
    expect(secondPid).not.toBe(firstPid);
    expect(alive(firstPid)).toBe(false);
    expect(out).toMatch(/host agent exited \(SIGKILL\); starting it again in 1 s/);
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.every((s) => s === 200)).toBe(true);

    // The new agent reattaches the computer the first one made (it kept running meanwhile).
    await expect
      .poll(async () => (await api.exec(id, 'echo served again')).body, { timeout: 60_000, interval: 500 })
      .toMatchObject({ output: 'served again\n', exit_code: 0 });

    // Ctrl-C ends the run: the supervisor does not bring the agent back, and nothing is left running.
    dev.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => dev!.once('exit', resolve));
    expect(code).toBe(0);
    await expect.poll(() => alive(secondPid), { timeout: 15_000 }).toBe(false);
    await api.del(`/computers/${id}`).catch(() => undefined);
  });
});
