/**
 * A real VNC server on the test host (TigerVNC's Xvnc, which .ci/run
 * installs): what a tenant's machine runs for the OpenComputers desktop, and
 * the reference the VNC authentication code is checked against. On loopback,
 * on a free port, a free display number; stopped and cleaned up by `stop`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../scripts/local-stack.ts';

export interface HostVnc {
  port: number;
  display: number;
  stop(): Promise<void>;
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

/** Starts Xvnc; with a password it asks for it (VNC authentication), without it asks nothing. */
export async function startHostVnc(opts: { password?: string; width?: number; height?: number } = {}): Promise<HostVnc> {
  if (!existsSync('/usr/bin/Xvnc')) throw new Error('Xvnc is missing: run `apt-get install -y tigervnc-standalone-server tigervnc-tools` (CI does, in .ci/run)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-host-vnc-'));
  const security = ['-SecurityTypes', 'None'];
  if (opts.password !== undefined) {
    writeFileSync(path.join(dir, 'passwd'), execFileSync('vncpasswd', ['-f'], { input: `${opts.password}\n` }));
    security.splice(0, 2, '-SecurityTypes', 'VncAuth', '-PasswordFile', path.join(dir, 'passwd'));
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    // Display numbers are machine-wide: take one no X server holds (Xvnc refuses a taken one, then we try the next).
    let display = 200 + Math.floor(Math.random() * 600);
    while (existsSync(`/tmp/.X${display}-lock`)) display++;
    const port = await freePort();
    const child: ChildProcess = spawn(
      'Xvnc',
      [`:${display}`, '-rfbport', String(port), '-localhost', '-nolisten', 'tcp', ...security, '-geometry', `${opts.width ?? 800}x${opts.height ?? 600}`, '-depth', '24'],
      { stdio: 'ignore' },
    );
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && child.exitCode === null && !(await listening(port))) await new Promise((r) => setTimeout(r, 50));
    if (child.exitCode === null && (await listening(port))) {
      return {
        port,
        display,
        stop: async () => {
          child.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
          if (child.exitCode === null) child.kill('SIGKILL');
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error('could not start Xvnc on the test host');
}
