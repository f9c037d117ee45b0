/**
 * HostTools on this machine, for the loop's own tests: commands in a process
 * group of their own (killed whole on cancel or timeout), files through the
 * file system, relative paths under a given home. The session object binds
 * the same interface to the host's jobs and files; these tests pin the loop,
 * the end-to-end tests pin that binding.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CommandResult, HostFailure, HostTools } from '../../durable-objects/agent-session/tools.ts';

export class LocalHostTools implements HostTools {
  /** Process groups of commands started and not yet reaped. */
  readonly running = new Set<number>();
  /** Set to make every call answer that the host is gone. */
  lost = false;
  private readonly home: string;

  constructor(home: string) {
    this.home = home;
  }

  private resolve(p: string): string {
    return path.resolve(this.home, p);
  }

  async runCommand(a: { command: string; cwd?: string; timeout_s: number }, signal: AbortSignal): Promise<CommandResult | HostFailure> {
    if (this.lost) return { failure: 'host_lost', message: 'the host is offline' };
    const child = spawn('bash', ['-c', a.command], { cwd: this.resolve(a.cwd ?? '.'), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pgid = child.pid!;
    this.running.add(pgid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const killGroup = () => {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        /* gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, a.timeout_s * 1000);
    signal.addEventListener('abort', killGroup, { once: true });
    const code = await new Promise<number>((r) => child.once('close', (c, sig) => r(c ?? (sig ? 128 + 9 : 1))));
    clearTimeout(timer);
    signal.removeEventListener('abort', killGroup);
    killGroup();
    this.running.delete(pgid);
    return { exit_code: timedOut ? 124 : code, stdout, stderr, timed_out: timedOut, truncated: false };
  }

  async readFile(a: { path: string; max_bytes: number }): Promise<{ content: string; size: number; truncated: boolean } | HostFailure> {
    if (this.lost) return { failure: 'host_lost', message: 'the host is offline' };
    try {
      const buf = await readFile(this.resolve(a.path));
      return { content: buf.subarray(0, a.max_bytes).toString('utf8'), size: buf.length, truncated: buf.length > a.max_bytes };
    } catch (e) {
      return { failure: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not_found' : 'failed', message: `${a.path}: ${(e as Error).message}` };
    }
  }

  async writeFile(a: { path: string; content: string }): Promise<{ bytes: number } | HostFailure> {
    if (this.lost) return { failure: 'host_lost', message: 'the host is offline' };
    const p = this.resolve(a.path);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, a.content);
    return { bytes: Buffer.byteLength(a.content) };
  }

  async listDirectory(a: { path: string }): Promise<{ entries: Array<{ name: string; is_dir: boolean; size: number }> } | HostFailure> {
    if (this.lost) return { failure: 'host_lost', message: 'the host is offline' };
    try {
      const names = await readdir(this.resolve(a.path));
      const entries = await Promise.all(names.sort().map(async (name) => {
        const s = await stat(path.join(this.resolve(a.path), name));
        return { name, is_dir: s.isDirectory(), size: s.size };
      }));
      return { entries };
    } catch (e) {
      return { failure: 'not_found', message: `${a.path}: ${(e as Error).message}` };
    }
  }
}
