/**
 * AI agent sessions on OpenComputers hosts (spec/05-opencomputers.txt,
 * Agents): the dispatch body, the session as the API shows it, budgets and
 * their limits, the tools a session may use, and the events of its stream.
 */
import { z } from 'zod';

/** The tools a session can call on its host. */
export const TOOL_NAMES = ['run_command', 'read_file', 'write_file', 'list_directory'] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export const SESSION_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

/** Why a session ended; the first four end it `completed`, `cancelled` ends it `cancelled`, the last two `failed`. */
export const END_REASONS = ['done', 'max_turns', 'budget', 'timeout', 'cancelled', 'host_lost', 'model_error'] as const;
export type EndReason = (typeof END_REASONS)[number];

/** Defaults and ceilings (docs/agents.md). */
export const SESSION_LIMITS = {
  max_turns: { default: 20, max: 500 },
  max_steps: { default: 200, max: 5000 },
  max_tokens: { max: 100_000_000 },
  timeout_ms: { default: 30 * 60_000, max: 24 * 3_600_000, min: 1_000 },
  /** One model call may take this long before it fails the session as model_error. */
  model_call_ms: 120_000,
  /** A command's default and longest run time, and the output one tool result may give the model. */
  command_timeout_s: { default: 120, max: 3600 },
  tool_output_chars: 16 * 1024,
  task_chars: 64 * 1024,
  context_bytes: 64 * 1024,
} as const;

const Int = (min: number, max: number) => z.number().int().min(min).max(max);

export const SessionBudget = z
  .object({
    max_steps: Int(1, SESSION_LIMITS.max_steps.max).optional(),
    max_tokens: Int(1, SESSION_LIMITS.max_tokens.max).optional(),
    timeout_ms: Int(SESSION_LIMITS.timeout_ms.min, SESSION_LIMITS.timeout_ms.max).optional(),
  })
  .strict();

const ModelName = z.string().trim().min(1).max(256);

export const DispatchAgent = z.object({
  task: z.string().trim().min(1, 'task is required').max(SESSION_LIMITS.task_chars),
  /** A model name for the provider, or the id or slug of one of the tenant's inference clusters. */
  model_id: ModelName.optional(),
  /** Client code sends `model`; the same as model_id. */
  model: ModelName.optional(),
  max_turns: Int(1, SESSION_LIMITS.max_turns.max).default(SESSION_LIMITS.max_turns.default),
  context: z
    .record(z.string().max(256), z.unknown())
    .refine((c) => JSON.stringify(c).length <= SESSION_LIMITS.context_bytes, `context must be at most ${SESSION_LIMITS.context_bytes} bytes of JSON`)
    .optional(),
  tools: z.array(z.enum(TOOL_NAMES)).max(TOOL_NAMES.length).optional(),
  budget: SessionBudget.optional(),
});
export type DispatchAgent = z.infer<typeof DispatchAgent>;

/** A session's budget with every limit decided. */
export interface Budget {
  max_turns: number;
  max_steps: number;
  max_tokens: number | null;
  timeout_ms: number;
}

export function budgetOf(body: DispatchAgent): Budget {
  return {
    max_turns: body.max_turns,
    max_steps: body.budget?.max_steps ?? SESSION_LIMITS.max_steps.default,
    max_tokens: body.budget?.max_tokens ?? null,
    timeout_ms: body.budget?.timeout_ms ?? SESSION_LIMITS.timeout_ms.default,
  };
}

/** The session as the API shows it: the page's fields, then ours. */
export interface SessionView {
  id: string;
  host_id: string;
  task: string;
  status: SessionStatus;
  max_turns: number;
  turns_used: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
  error: string | null;
  model: string;
  tools: ToolName[];
  budget: { max_steps: number; max_tokens: number | null; timeout_ms: number };
  steps_used: number;
  tokens_used: number;
  end_reason: EndReason | null;
  summary: string | null;
}

/** Event types of a session's stream, in the page's shape `{type, session_id, data, timestamp}`. */
export const SESSION_EVENT_TYPES = ['started', 'message', 'tool_call', 'tool_result', 'usage', 'completed', 'failed', 'cancelled'] as const;
export type SessionEventType = (typeof SESSION_EVENT_TYPES)[number];
export const TERMINAL_EVENT_TYPES = ['completed', 'failed', 'cancelled'] as const;
