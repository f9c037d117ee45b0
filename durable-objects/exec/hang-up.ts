/**
 * Ending a process whose user went away (an exec socket closed first, an idle
 * terminal expired): SIGHUP first, as a terminal hang-up would — a shell saves
 * its history, an editor its swap file — then SIGKILL after a short grace for
 * whatever ignores HUP. A streamed command that is cancelled gets SIGTERM
 * first instead, as a timeout does. The agent signals the whole process group.
 */
import type { AgentLink } from '../agent-link.ts';
import type { ProcManager } from './proc-manager.ts';

export const HANG_UP_GRACE_MS = 2_000;

/**
 * Sends HUP (or `first`), and KILL after the grace if the process still runs;
 * false when the agent could not be asked.
 */
export async function hangUp(link: AgentLink, procs: ProcManager, procId: string, first: 'HUP' | 'TERM' = 'HUP'): Promise<boolean> {
  const running = () => procs.row(procId)?.status === 'running';
  if (!running()) return true;
  const r = await link.request('proc.signal', { proc_id: procId, signal: first }, 10_000);
  if (!r.ok) return r.code !== 'AGENT_UNAVAILABLE';
  // A pending timer keeps the object awake until it has fired.
  setTimeout(() => {
    if (running()) void link.request('proc.signal', { proc_id: procId, signal: 'KILL' }, 10_000);
  }, HANG_UP_GRACE_MS);
  return true;
}
