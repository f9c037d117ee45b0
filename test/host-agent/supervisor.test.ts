/**
 * The supervisor `npm start` runs the host agent under: a process that keeps
 * dying is started again after pauses that double up to the ceiling, and a
 * run that lasted is followed by the shortest pause again. Real processes;
 * what is checked is the pauses it chose, not how long anything took.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Supervisor } from '../../scripts/supervisor.ts';

let supervisor: Supervisor | undefined;
afterEach(async () => {
  await supervisor?.stop('SIGKILL');
  supervisor = undefined;
});

/** A Node process that lives `ms` and exits with code 3. */
const dying = (ms: number) => async () => ({ process: spawn(process.execPath, ['-e', `setTimeout(() => process.exit(3), ${ms})`], { stdio: 'ignore' }) });

/** Runs a supervisor until it has logged `n` exits; the pauses it announced, in seconds. */
async function pauses(opts: { lifeMs: number; stableMs: number }, n: number): Promise<number[]> {
  const seen: number[] = [];
  await new Promise<void>((resolve) => {
    supervisor = new Supervisor({
      name: 'test agent',
      start: dying(opts.lifeMs),
      minDelayMs: 100,
      maxDelayMs: 800,
      stableMs: opts.stableMs,
      log: (line) => {
        const m = /exited \(code 3\); starting it again in ([\d.]+) s/.exec(line);
        if (!m) return;
        seen.push(Number(m[1]));
        if (seen.length === n) resolve();
      },
    });
    void supervisor.start();
  });
  return seen;
}

describe('the supervisor npm start runs the agent under', () => {
  it('starts a dying process again after pauses that double up to the ceiling', async () => {
    expect(await pauses({ lifeMs: 0, stableMs: 60_000 }, 6)).toEqual([0.1, 0.2, 0.4, 0.8, 0.8, 0.8]);
    expect(supervisor!.restarts).toBeGreaterThanOrEqual(5);
  });

  it('after a run that lasted, the pause starts over from the shortest', async () => {
    expect(await pauses({ lifeMs: 400, stableMs: 200 }, 4)).toEqual([0.1, 0.1, 0.1, 0.1]);
  });

  it('stopped, it starts nothing again', async () => {
    const s = new Supervisor({ name: 'test agent', start: dying(60_000), log: () => {} });
    const child = await s.start();
    await s.stop();
    expect(child.signalCode).toBe('SIGTERM');
    expect(s.current).toBeNull();
    expect(s.restarts).toBe(0);
  });
});
