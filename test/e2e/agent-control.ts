/**
 * Making the test stack's host agent lose its connections on purpose: SIGUSR2
 * drops every socket as a network failure would (they redial with jittered
 * backoff); `agentOffline` keeps it away for as long as a test needs.
 */
import { connectionsTo } from '../../scripts/proc-net.ts';
import { hangar } from './client.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Drops every connection of the agent; they come back by themselves. */
export const dropAgentSockets = (): void => {
  process.kill(hangar().agentPid, 'SIGUSR2');
};

/**
 * Drops the agent's sockets and freezes it (SIGSTOP) before it can redial —
 * its first retry waits at least 50 ms — so the server sees no agent until
 * the returned function resumes it. Retries when a redial slips in first.
 */
export async function agentOffline(): Promise<() => void> {
  const { agentPid, origin } = hangar();
  const port = Number(new URL(origin).port);
  for (let attempt = 0; attempt < 5; attempt++) {
    process.kill(agentPid, 'SIGUSR2');
    const deadline = Date.now() + 5_000;
    while (connectionsTo(agentPid, port) > 0) {
      if (Date.now() > deadline) throw new Error('the agent kept its connections after SIGUSR2');
      await sleep(1);
    }
    process.kill(agentPid, 'SIGSTOP');
    if (connectionsTo(agentPid, port) === 0) return () => process.kill(agentPid, 'SIGCONT');
    process.kill(agentPid, 'SIGCONT');
    await sleep(200);
  }
  throw new Error('could not catch the agent between its drop and its redial');
}
