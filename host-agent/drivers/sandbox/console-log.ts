/**
 * A computer's system log on its host: `console.log` in its directory, where
 * the launcher, the init script and the guest agent write (and the boot
 * marker), plus lines the driver adds — an exit and why, out-of-memory kills,
 * provisioning — marked `hangar-agent:` with the time. The agent ships the
 * file to the server (handlers/logs.ts).
 */
import fs from 'node:fs';
import type { ComputerPaths } from './paths.ts';

/** Lines of computers whose directory does not exist yet (provisioning), written once it does; bounded. */
const early = new Map<string, string[]>();
const EARLY_MAX = 200;

/** Adds one line (newlines in it become spaces). Before the computer's directory exists the line waits for it. */
export function appendConsole(paths: Pick<ComputerPaths, 'dir' | 'log'>, line: string): void {
  const text = `${new Date().toISOString()} hangar-agent: ${line.replace(/[\r\n]+/g, ' ')}\n`;
  if (!fs.existsSync(paths.dir)) {
    const waiting = early.get(paths.dir) ?? [];
    if (waiting.length < EARLY_MAX) waiting.push(text);
    early.set(paths.dir, waiting);
    return;
  }
  const before = early.get(paths.dir) ?? [];
  early.delete(paths.dir);
  try {
    fs.appendFileSync(paths.log, before.join('') + text);
  } catch {
    // A log line is never worth failing an operation for.
  }
}

/** Writes a boot or resume marker, after the driver's lines that waited for the directory (so they come before the boot they led to). */
export function appendMarker(paths: Pick<ComputerPaths, 'dir' | 'log'>, marker: string): void {
  const before = early.get(paths.dir) ?? [];
  early.delete(paths.dir);
  fs.appendFileSync(paths.log, before.join('') + `${marker}\n`, { mode: 0o600 });
}

/** Forgets what waits for a computer that will not come (its provisioning failed, it was deleted). */
export function dropEarlyConsole(paths: ComputerPaths): void {
  early.delete(paths.dir);
}

/** Out-of-memory kills noted so far per computer, so each is logged once. */
export class OomNotes {
  private readonly seen = new Map<string, number>();

  /** Logs kills counted since the last look; `baseline` is the count when the computer was first seen. */
  check(id: string, paths: ComputerPaths, kills: number, baseline: number, limitMb: number): void {
    const before = this.seen.get(id) ?? baseline;
    if (kills > before) {
      const n = kills - before;
      appendConsole(paths, `out of memory: the kernel killed ${n === 1 ? 'a process' : `${n} processes`} in this computer (memory limit ${limitMb} MiB)`);
    }
    this.seen.set(id, kills);
  }

  forget(id: string): void {
    this.seen.delete(id);
  }
}
