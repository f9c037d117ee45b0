/**
 * The agent loop: call the model with the conversation and the tools, run
 * the tool calls it makes on the host, feed the results back, and repeat
 * until the model answers without tool calls or a limit ends it. Every step
 * is decided by the pure table (state-table.ts) from counters that are
 * persisted before the step's effects, so a loop picked up again after its
 * object was evicted carries on where it was (a model call in flight is made
 * again; a tool call in flight is asked again of the host — the session
 * object binds HostTools to jobs it can find again by id).
 *
 * Stopping: the caller aborts `signal` with a LoopStop reason (cancel,
 * timeout, host lost); the step in flight is cut short (the model call
 * aborted, the job cancelled on the host) and the session ends with that
 * reason. Whatever happens, a session's run ends with exactly one terminal
 * event (session-events.ts guards it).
 */
import { type Budget, type EndReason, type ToolName } from '../../schema/api-agents.ts';
import type { ChatMessage, ToolCall, ToolDefinition, Usage } from '../../schema/openai.ts';
import type { ModelResult } from './openai-client.ts';
import { STATUS_OF_REASON, nextStep, transition, type LoopCounters } from './state-table.ts';
import type { SessionEvents } from './session-events.ts';
import { TOOL_DEFINITIONS, excerpt, runTool, type HostTools } from './tools.ts';

/** What a session keeps between steps (persisted whole after each). */
export interface LoopState extends LoopCounters {
  messages: ChatMessage[];
  budget: Budget;
  tools: ToolName[];
  end_reason: EndReason | null;
  summary: string | null;
  error: string | null;
  completed_at: number | null;
}

/** Why a loop was told to stop; given as the abort reason. */
export class LoopStop extends Error {
  readonly reason: EndReason;
  constructor(reason: EndReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface LoopDeps {
  now(): number;
  callModel(req: { messages: ChatMessage[]; tools: ToolDefinition[]; max_tokens?: number }, signal: AbortSignal): Promise<ModelResult>;
  host: HostTools;
  events: SessionEvents;
  /**
   * Saves the state. The session object writes it synchronously (its SQLite
   * storage), so the state and the events that follow it reach storage
   * together, before anything the step does next.
   */
  persist(state: LoopState): Promise<void> | void;
}

/** Tokens asked for one answer at most; less when the token budget has less left. */
const MAX_ANSWER_TOKENS = 4096;
const SUMMARY_CHARS = 2048;
const EVENT_OUTPUT_CHARS = 2048;

/** Runs the loop until the session ends or `signal` stops it; resolves when it has ended. */
export async function runLoop(state: LoopState, deps: LoopDeps, signal: AbortSignal): Promise<void> {
  if (state.status === 'pending') {
    state.status = transition('pending', 'start') ?? state.status;
    state.started_at = deps.now();
    await deps.persist(state);
    deps.events.emit('started', { max_turns: state.budget.max_turns, budget: budgetData(state.budget), tools: state.tools });
  }
  // The session's own deadline cuts a step short like a cancel does (a long command is stopped on the host).
  const timeout = new AbortController();
  const left = (state.started_at ?? deps.now()) + state.budget.timeout_ms - deps.now();
  const timer = setTimeout(() => timeout.abort(new LoopStop('timeout', 'the session ran out of time')), Math.max(0, left));
  const stop = AbortSignal.any([signal, timeout.signal]);
  try {
    for (;;) {
      if (stop.aborted) return await end(state, deps, stopOf(stop));
      const step = nextStep(state, state.budget, deps.now());
      if (step.kind === 'none') return;
      if (step.kind === 'end') return await end(state, deps, { reason: step.reason });
      const ending = step.kind === 'call_model' ? await modelTurn(state, deps, stop) : await toolStep(state, deps, step.call, stop);
      if (ending) return await end(state, deps, ending);
    }
  } finally {
    clearTimeout(timer);
  }
}

type Ending = { reason: EndReason; error?: string; summary?: string };

function stopOf(signal: AbortSignal): Ending {
  const r = signal.reason;
  return r instanceof LoopStop ? { reason: r.reason, error: r.reason === 'host_lost' ? r.message : undefined } : { reason: 'cancelled' };
}

function budgetData(b: Budget) {
  return { max_steps: b.max_steps, max_tokens: b.max_tokens, timeout_ms: b.timeout_ms };
}

async function modelTurn(state: LoopState, deps: LoopDeps, signal: AbortSignal): Promise<Ending | null> {
  const tools = state.tools.map((t) => TOOL_DEFINITIONS[t]);
  const left = state.budget.max_tokens === null ? MAX_ANSWER_TOKENS : Math.min(MAX_ANSWER_TOKENS, state.budget.max_tokens - state.tokens_used);
  const r = await deps.callModel({ messages: state.messages, tools, max_tokens: Math.max(1, left) }, signal);
  if (signal.aborted) return stopOf(signal);
  if (!r.ok) return { reason: 'model_error', error: r.error };
  const turn = state.turns_used + 1;
  const a = r.answer;
  const usage: Usage = a.usage ?? estimateUsage(state.messages, a.content, a.tool_calls);
  const message: ChatMessage = a.tool_calls.length ? { role: 'assistant', content: a.content || null, tool_calls: a.tool_calls } : { role: 'assistant', content: a.content };
  state.messages.push(message);
  state.turns_used = turn;
  state.tokens_used += usage.total_tokens;
  state.pending_tools = [...a.tool_calls];
  await deps.persist(state);
  deps.events.emit('message', { turn, role: 'assistant', content: a.content, tool_calls: a.tool_calls.map((c) => ({ id: c.id, name: c.function.name })), finish_reason: a.finish_reason });
  deps.events.emit('usage', { turn, ...usage, estimated: a.usage === null, tokens_used: state.tokens_used });
  if (!a.tool_calls.length) return { reason: 'done', summary: a.content };
  return null;
}

async function toolStep(state: LoopState, deps: LoopDeps, call: ToolCall, signal: AbortSignal): Promise<Ending | null> {
  const turn = state.turns_used;
  deps.events.emit('tool_call', { turn, call_id: call.id, name: call.function.name, arguments: parseForEvent(call.function.arguments) });
  const started = deps.now();
  const outcome = await runTool(deps.host, state.tools, call, signal);
  if (outcome.aborted || signal.aborted) {
    deps.events.emit('tool_result', { turn, call_id: call.id, name: call.function.name, ok: false, error: 'stopped', duration_ms: deps.now() - started });
    return stopOf(signal);
  }
  deps.events.emit('tool_result', {
    turn,
    call_id: call.id,
    name: call.function.name,
    ok: outcome.ok,
    ...(outcome.exit_code !== undefined ? { exit_code: outcome.exit_code } : {}),
    output: excerpt(outcome.content, EVENT_OUTPUT_CHARS),
    ...(outcome.error ? { error: outcome.error } : {}),
    duration_ms: deps.now() - started,
  });
  if (outcome.host_lost) return { reason: 'host_lost', error: outcome.error };
  state.messages.push({ role: 'tool', tool_call_id: call.id, content: outcome.content });
  state.pending_tools.shift();
  state.steps_used++;
  await deps.persist(state);
  return null;
}

/** Ends the session once: status from the reason, persisted, then the terminal event. */
async function end(state: LoopState, deps: LoopDeps, e: Ending): Promise<void> {
  const next = transition(state.status, 'end', e.reason);
  if (!next) return;
  state.status = next;
  state.end_reason = e.reason;
  state.error = e.error ?? null;
  state.summary = excerpt(e.summary ?? summaryOf(state, e.reason), SUMMARY_CHARS);
  state.pending_tools = [];
  state.completed_at = deps.now();
  await deps.persist(state);
  deps.events.emit(STATUS_OF_REASON[e.reason], {
    reason: e.reason,
    summary: state.summary,
    turns_used: state.turns_used,
    steps_used: state.steps_used,
    tokens_used: state.tokens_used,
    ...(state.error ? { error: state.error } : {}),
  });
}

const REASON_TEXT: Record<EndReason, string> = {
  done: 'the model finished',
  max_turns: 'the session used all its turns',
  budget: 'the session used its budget',
  timeout: 'the session ran out of time',
  cancelled: 'the session was cancelled',
  host_lost: 'the host went away',
  model_error: 'the model failed',
};

function summaryOf(state: LoopState, reason: EndReason): string {
  const last = [...state.messages].reverse().find((m) => m.role === 'assistant');
  const said = last && typeof last.content === 'string' && last.content ? ` The model last said: ${last.content}` : '';
  return `${REASON_TEXT[reason]} after ${state.turns_used} turn(s) and ${state.steps_used} tool call(s).${said}`;
}

function parseForEvent(args: string): unknown {
  try {
    return JSON.parse(args);
  } catch {
    return excerpt(args, EVENT_OUTPUT_CHARS);
  }
}

/** About four characters a token, when the provider did not count. */
function estimateUsage(messages: ChatMessage[], content: string, calls: ToolCall[]): Usage {
  const prompt = Math.ceil(JSON.stringify(messages).length / 4);
  const completion = Math.ceil((content.length + JSON.stringify(calls).length) / 4);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The conversation a session starts with: what it is, where it runs, the task and its context. */
export function initialMessages(task: string, context: Record<string, unknown> | undefined, tools: readonly ToolName[]): ChatMessage[] {
  const system = [
    'You are an agent working on a computer through tools. Do the task by calling the tools; each result comes back to you.',
    `Your tools: ${tools.join(', ')}. Paths are absolute or relative to the home directory. Commands run with bash.`,
    'When the task is done (or cannot be done), answer with a short summary and no tool calls: that ends the session.',
  ].join('\n');
  const user = context && Object.keys(context).length ? `${task}\n\nContext:\n${JSON.stringify(context, null, 2)}` : task;
  return [
    { role: 'system', content: system },
    { role: 'user', content: user },
  ];
}

/** A new session's loop state. */
export function newLoopState(task: string, context: Record<string, unknown> | undefined, budget: Budget, tools: ToolName[]): LoopState {
  return {
    status: 'pending',
    turns_used: 0,
    steps_used: 0,
    tokens_used: 0,
    started_at: null,
    pending_tools: [],
    messages: initialMessages(task, context, tools),
    budget,
    tools,
    end_reason: null,
    summary: null,
    error: null,
    completed_at: null,
  };
}
