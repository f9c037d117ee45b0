/**
 * Images (kernels, boot images, disk images) are built in a temp path named
 * after the building process and renamed into place, so a crash never leaves
 * a half image under a final name, and two agents building the same thing
 * both end with one good copy.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** A fresh temp path next to `final` (same filesystem, so rename is atomic). */
export function buildPath(final: string): string {
  return path.join(path.dirname(final), `.build-${process.pid}-${randomBytes(4).toString('hex')}-${path.basename(final)}`);
}

/** Renames a finished build into place; when another process got there first, keeps theirs. */
export function publish(tmp: string, final: string): void {
  try {
    fs.renameSync(tmp, final);
  } catch (err) {
    if (!fs.existsSync(final)) throw err;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Removes builds left by processes that died while building (their pid is in the name); `end` is
 * called first on each, to end what still runs there (a warm machine's VM).
 */
export function removeAbandonedBuilds(dir: string, end?: (build: string) => void): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^\.build-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
    end?.(path.join(dir, name));
    fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** One build at a time per key within this process; later callers share the running one. */
export class BuildOnce<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, build: () => Promise<T>): Promise<T> {
    let p = this.running.get(key);
    if (!p) {
      p = build().finally(() => this.running.delete(key));
      this.running.set(key, p);
    }
    return p;
  }
}
