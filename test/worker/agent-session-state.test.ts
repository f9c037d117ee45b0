/** The agent session's lifecycle table and next-step rule, without I/O. */
import { describe, expect, it } from 'vitest';
import { nextStep, transition, type LoopCounters } from '../../durable-objects/agent-session/state-table.ts';
import { END_REASONS, SESSION_STATUSES, type Budget } from '../../schema/api-agents.ts';

const budget: Budget = { max_turns: 3, max_steps: 5, max_tokens: 1000, timeout_ms: 10_000 };
const base: LoopCounters = { status: 'running', turns_used: 0, steps_used: 0, tokens_used: 0, started_at: 0, pending_tools: [] };
const call = { id: 'c1', type: 'function' as const, function: { name: 'run_command', arguments: '{}' } };

describe('session lifecycle table', () => {
  it('starts only a pending session', () => {
    expect(transition('pending', 'start')).toBe('running');
    for (const s of SESSION_STATUSES.filter((x) => x !== 'pending')) expect(transition(s, 'start')).toBeNull();
  });

  it('ends limits as completed, a cancel as cancelled, a lost host or failing model as failed', () => {
    const expected = { done: 'completed', max_turns: 'completed', budget: 'completed', timeout: 'completed', cancelled: 'cancelled', host_lost: 'failed', model_error: 'failed' };
    for (const r of END_REASONS) {
      expect(transition('running', 'end', r)).toBe(expected[r]);
      expect(transition('pending', 'end', r)).toBe(expected[r]);
    }
  });

  it('never ends a session twice', () => {
    for (const s of ['completed', 'failed', 'cancelled'] as const) for (const r of END_REASONS) expect(transition(s, 'end', r)).toBeNull();
  });
});

describe('next step', () => {
  it('calls the model while turns, tokens and time are left', () => {
    expect(nextStep(base, budget, 1)).toEqual({ kind: 'call_model' });
  });

  it('runs pending tool calls first, in order', () => {
    expect(nextStep({ ...base, turns_used: 3, pending_tools: [call] }, budget, 1)).toEqual({ kind: 'run_tool', call });
  });

  it('ends at each limit with its reason', () => {
    expect(nextStep({ ...base, turns_used: 3 }, budget, 1)).toEqual({ kind: 'end', reason: 'max_turns' });
    expect(nextStep({ ...base, tokens_used: 1000 }, budget, 1)).toEqual({ kind: 'end', reason: 'budget' });
    expect(nextStep({ ...base, steps_used: 5, pending_tools: [call] }, budget, 1)).toEqual({ kind: 'end', reason: 'budget' });
    expect(nextStep({ ...base, pending_tools: [call] }, budget, 10_000)).toEqual({ kind: 'end', reason: 'timeout' });
    expect(nextStep({ ...base, tokens_used: 5000 }, { ...budget, max_tokens: null }, 1)).toEqual({ kind: 'call_model' });
  });

  it('does nothing for an ended session', () => {
    expect(nextStep({ ...base, status: 'completed', pending_tools: [call] }, budget, 1)).toEqual({ kind: 'none' });
  });
});
