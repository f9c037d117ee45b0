/**
 * The OpenAI-compatible inference API as Hangar speaks it: what the managed
 * model server accepts and answers, what an agent session sends to a model
 * provider and reads back, and what a cluster's inference URL relays.
 * Requests are validated loosely (clients send many fields we do not use;
 * unknown ones pass through to the model server); the fields we act on are
 * checked strictly. Responses from a provider are parsed with the same
 * schemas, so a provider's malformed answer is a clear `model_error`.
 */
import { z } from 'zod';

/** A message's content: a string, or parts of which the text parts count. */
const Content = z.union([
  z.string(),
  z.array(z.object({ type: z.string().max(64), text: z.string().optional() }).loose()).max(1024),
  z.null(),
]);

export const ToolCall = z.object({
  id: z.string().max(256),
  type: z.literal('function'),
  function: z.object({ name: z.string().max(256), arguments: z.string() }),
});
export type ToolCall = z.infer<typeof ToolCall>;

export const ChatMessage = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: Content }).loose(),
  z.object({ role: z.literal('developer'), content: Content }).loose(),
  z.object({ role: z.literal('user'), content: Content }).loose(),
  z.object({ role: z.literal('assistant'), content: Content.optional(), tool_calls: z.array(ToolCall).max(256).optional() }).loose(),
  z.object({ role: z.literal('tool'), content: Content, tool_call_id: z.string().max(256) }).loose(),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** A JSON Schema object as tools describe their parameters; kept as given. */
const JsonSchemaObject = z.record(z.string(), z.unknown());

export const ToolDefinition = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'tool names are 1-64 letters, digits, _ or -'),
    description: z.string().max(8192).optional(),
    parameters: JsonSchemaObject.optional(),
  }),
});
export type ToolDefinition = z.infer<typeof ToolDefinition>;

const Stop = z.union([z.string().max(256), z.array(z.string().max(256)).max(16), z.null()]).optional();

/** Sampling fields shared by chat and text completions. */
const Sampling = {
  model: z.string().max(256).optional(),
  max_tokens: z.number().int().positive().max(1_000_000).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stop: Stop,
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullable().optional(),
};

export const ChatCompletionRequest = z
  .object({
    ...Sampling,
    messages: z.array(ChatMessage).min(1, 'messages must hold at least one message').max(4096),
    max_completion_tokens: z.number().int().positive().max(1_000_000).nullable().optional(),
    tools: z.array(ToolDefinition).max(128).optional(),
    tool_choice: z.unknown().optional(),
  })
  .loose();
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const CompletionRequest = z
  .object({ ...Sampling, prompt: z.union([z.string(), z.array(z.string()).min(1).max(64)]) })
  .loose();
export type CompletionRequest = z.infer<typeof CompletionRequest>;

export const EmbeddingRequest = z
  .object({
    model: z.string().max(256).optional(),
    input: z.union([z.string(), z.array(z.string()).min(1).max(256)]),
    encoding_format: z.enum(['float', 'base64']).optional(),
  })
  .loose();
export type EmbeddingRequest = z.infer<typeof EmbeddingRequest>;

export const Usage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof Usage>;

/** A chat completion as a provider answers it (only what a session reads is required). */
export const ChatCompletion = z.object({
  id: z.string().optional(),
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        index: z.number().int().optional(),
        message: z.object({
          role: z.string().optional(),
          content: z.string().nullable().optional(),
          tool_calls: z.array(ToolCall).nullable().optional(),
        }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1, 'the response has no choices'),
  usage: Usage.nullable().optional(),
});
export type ChatCompletion = z.infer<typeof ChatCompletion>;

/** One chunk of a streamed chat completion. Tool calls arrive in pieces keyed by `index`. */
export const ChatCompletionChunk = z.object({
  id: z.string().optional(),
  choices: z
    .array(
      z.object({
        index: z.number().int().optional(),
        delta: z
          .object({
            role: z.string().nullable().optional(),
            content: z.string().nullable().optional(),
            tool_calls: z
              .array(
                z.object({
                  index: z.number().int().nonnegative(),
                  id: z.string().nullable().optional(),
                  type: z.string().nullable().optional(),
                  function: z.object({ name: z.string().nullable().optional(), arguments: z.string().nullable().optional() }).optional(),
                }),
              )
              .nullable()
              .optional(),
          })
          .optional(),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .default([]),
  usage: Usage.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunk>;

/** The text of a message's content (text parts joined). */
export function contentText(content: z.infer<typeof Content> | undefined): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => (typeof p.text === 'string' ? p.text : '')).join('');
}

/** The OpenAI error body every OpenAI client understands. */
export function openAiError(message: string, type: string, code: string | null = null): { error: { message: string; type: string; param: null; code: string | null } } {
  return { error: { message, type, param: null, code } };
}
