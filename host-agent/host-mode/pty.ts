/**
 * Terminals on a machine that has only Node (no compiler, so no native PTY
 * module): the system's `script` command makes the PTY and relays it over
 * plain pipes. A small sh prologue inside the PTY records the terminal's
 * name (so a resize can reach it with `stty`, which makes the kernel send
 * SIGWINCH to the shell), sets the first size, and execs the login shell.
 *
 * Two dialects: util-linux (Linux: `script -q -f -e -c CMD /dev/null`) and
 * BSD (macOS, FreeBSD: `script -q /dev/null ARGV…`). Linux is tested;
 * docs/opencomputers.md says what is tested where. Windows has no `script`:
 * terminals are off there (jobs work).
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DriverError } from '../drivers/driver.ts';

/** The absolute path of a program found on PATH, or null. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** The `script` that can make PTYs here, or null (Windows, or none installed). */
export function findScript(): string | null {
  return process.platform === 'win32' ? null : findOnPath('script');
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Inside the PTY: note the terminal's name, set its size, become the program. */
const PROLOGUE =
  'tty > "$HANGAR_TTY_FILE" 2>/dev/null; unset HANGAR_TTY_FILE; stty rows "$HANGAR_ROWS" cols "$HANGAR_COLS" 2>/dev/null; ' +
  'unset HANGAR_ROWS HANGAR_COLS; SHELL="$HANGAR_LOGIN_SHELL"; export SHELL; unset HANGAR_LOGIN_SHELL; exec "$@"';

export interface PtyPlan {
  argv: string[];
  env: NodeJS.ProcessEnv;
  resize(rows: number, cols: number): Promise<void>;
  cleanup(): void;
}

/** How to run `argv` on a new PTY of `rows` x `cols` through `script`. */
export function ptyPlan(script: string, argv: string[], size: { rows: number; cols: number }, env: NodeJS.ProcessEnv): PtyPlan {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-pty-'));
  const ttyFile = path.join(dir, 'tty');
  const bsd = process.platform !== 'linux';
  const inner = ['/bin/sh', '-c', PROLOGUE, 'hangar-pty', ...argv];
  const ptyEnv: NodeJS.ProcessEnv = {
    ...env,
    TERM: env.TERM ?? 'xterm-256color',
    HANGAR_TTY_FILE: ttyFile,
    HANGAR_ROWS: String(size.rows),
    HANGAR_COLS: String(size.cols),
    HANGAR_LOGIN_SHELL: argv[0],
    // util-linux script runs its command with $SHELL -c: make that a POSIX shell.
    SHELL: '/bin/sh',
  };
  let tty: string | null = null;
  return {
    argv: bsd ? [script, '-q', '/dev/null', ...inner] : [script, '-q', '-f', '-e', '-c', inner.map(quote).join(' '), '/dev/null'],
    env: ptyEnv,
    resize(rows, cols) {
      try {
        tty ??= readFileSync(ttyFile, 'utf8').trim();
      } catch {
        return Promise.reject(new DriverError('FAILED', 'the terminal is not ready to resize yet'));
      }
      const name = tty;
      return new Promise((resolve, reject) => {
        execFile('stty', [bsd ? '-f' : '-F', name, 'rows', String(rows), 'cols', String(cols)], { timeout: 5_000 }, (err) =>
          err ? reject(new DriverError('FAILED', `resizing the terminal failed: ${err.message}`)) : resolve(),
        );
      });
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
