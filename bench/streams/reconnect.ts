/**
 * Agent reconnect: SIGUSR2 makes the agent drop every socket as a network
 * failure would; timed from the signal until an exec through the API
 * succeeds again (the agent redialled, re-attached, and serves requests).
 */
import { connectionsTo } from '../../scripts/proc-net.ts';
import type { Stack } from './stack.ts';

const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** `drops` drops, `gapMs` apart (after each recovery); returns ms from each signal to the first good exec. */
export async function reconnects(stack: Stack, drops: number, gapMs: number): Promise<number[]> {
  const port = Number(new URL(stack.origin).port);
  const times: number[] = [];
  for (let i = 0; i < drops; i++) {
    const t0 = performance.now();
    process.kill(stack.agentPid, 'SIGUSR2');
    // An exec that beats the agent to its signal handler would time nothing.
    while (connectionsTo(stack.agentPid, port) > 0) await sleep(1);
    for (;;) {
      const r = await stack.call<{ exit_code: number }>('POST', `/computers/${stack.computerId}/exec`, { command: 'true', timeout: 10 });
      if (r.status === 200) break;
      if (performance.now() - t0 > 60_000) throw new Error(`no exec within 60 s after drop ${i + 1}`);
      await sleep(5);
    }
    times.push(performance.now() - t0);
    await sleep(gapMs);
  }
  return times;
}
