/**
 * An agent session's lifecycle as pure tables: which status an event moves a
 * session to, which status each end reason gives, and — from the counters and
 * the budget alone — what the loop does next. No I/O here; the session object
 * persists what these return before it acts on it.
 */
import type { Budget, EndReason, SessionStatus } from '../../schema/api-agents.ts';
import type { ToolCall } from '../../schema/openai.ts';

export type SessionEvent = 'start' | 'end';

const TERMINAL: ReadonlySet<SessionStatus> = new Set(['completed', 'failed', 'cancelled']);

export const isTerminal = (s: SessionStatus): boolean => TERMINAL.has(s);

/** Limits reached end a session as completed (not an error); a cancel is cancelled; a lost host or a failing model is a failure. */
export const STATUS_OF_REASON: Record<EndReason, 'completed' | 'failed' | 'cancelled'> = {
  done: 'completed',
  max_turns: 'completed',
  budget: 'completed',
  timeout: 'completed',
  cancelled: 'cancelled',
  host_lost: 'failed',
  model_error: 'failed',
};

/**
 * status × event → next status; null when the event does not apply (a session
 * ends once: every later end is ignored, which is what makes its terminal
 * event exactly one).
 */
export function transition(status: SessionStatus, event: SessionEvent, reason?: EndReason): SessionStatus | null {
  if (isTerminal(status)) return null;
  if (event === 'start') return status === 'pending' ? 'running' : null;
  return STATUS_OF_REASON[reason ?? 'done'];
}

/** What the loop keeps between steps. */
export interface LoopCounters {
  status: SessionStatus;
  turns_used: number;
  steps_used: number;
  tokens_used: number;
  /** When the session started running (ms); its timeout counts from here. */
  started_at: number | null;
  /** Tool calls of the last model answer not yet run, in order. */
  pending_tools: ToolCall[];
}

export type Step = { kind: 'call_model' } | { kind: 'run_tool'; call: ToolCall } | { kind: 'end'; reason: EndReason } | { kind: 'none' };

/**
 * The next step. Tool calls the model asked for run before anything else (a
 * turn is a model call and the calls it made), unless the step budget is
 * spent; a new model call needs a turn and tokens left.
 */
export function nextStep(c: LoopCounters, budget: Budget, now: number): Step {
  if (isTerminal(c.status)) return { kind: 'none' };
  if (c.started_at !== null && now >= c.started_at + budget.timeout_ms) return { kind: 'end', reason: 'timeout' };
  if (c.pending_tools.length) {
    return c.steps_used >= budget.max_steps ? { kind: 'end', reason: 'budget' } : { kind: 'run_tool', call: c.pending_tools[0] };
  }
  if (budget.max_tokens !== null && c.tokens_used >= budget.max_tokens) return { kind: 'end', reason: 'budget' };
  if (c.turns_used >= budget.max_turns) return { kind: 'end', reason: 'max_turns' };
  return { kind: 'call_model' };
}
