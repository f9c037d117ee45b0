/**
 * OpenAI chat messages and tools in node-llama-cpp's terms: a chat history
 * (system / user / model turns, with a model turn's tool calls and their
 * results folded into it) and a set of functions whose parameter schemas are
 * cut down to the JSON Schema subset llama.cpp's grammar understands. What
 * cannot be expressed is dropped, never refused: a tool whose schema is
 * exotic is offered with free-form parameters.
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions, ChatModelResponse, GbnfJsonSchema } from 'node-llama-cpp';
import { contentText, type ChatMessage, type ToolDefinition } from '../../schema/openai.ts';

const BASIC = new Set(['string', 'number', 'integer', 'boolean', 'null']);

/** The part of a JSON Schema the grammar can enforce, or undefined when nothing useful is left. */
export function grammarSchema(schema: unknown, depth = 0): GbnfJsonSchema | undefined {
  if (depth > 8 || typeof schema !== 'object' || schema === null || Array.isArray(schema)) return undefined;
  const s = schema as Record<string, unknown>;
  const description = typeof s.description === 'string' ? { description: s.description } : {};
  if (Array.isArray(s.enum) && s.enum.every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v))) {
    return { enum: s.enum as Array<string | number | boolean | null>, ...description };
  }
  if (s.const === null || ['string', 'number', 'boolean'].includes(typeof s.const)) return { const: s.const as string | number | boolean | null, ...description };
  if (Array.isArray(s.oneOf) || Array.isArray(s.anyOf)) {
    const options = ((s.oneOf ?? s.anyOf) as unknown[]).map((o) => grammarSchema(o, depth + 1));
    return options.every((o) => o !== undefined) && options.length ? { oneOf: options as GbnfJsonSchema[], ...description } : undefined;
  }
  if (s.type === 'object') {
    const properties: Record<string, GbnfJsonSchema> = {};
    const props = typeof s.properties === 'object' && s.properties !== null ? (s.properties as Record<string, unknown>) : {};
    for (const [k, v] of Object.entries(props)) {
      const p = grammarSchema(v, depth + 1);
      if (!p) return undefined;
      properties[k] = p;
    }
    const required = Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === 'string' && r in properties) : undefined;
    return { type: 'object', properties, ...(required ? { required } : {}), ...description };
  }
  if (s.type === 'array') {
    const items = s.items === undefined ? undefined : grammarSchema(s.items, depth + 1);
    if (s.items !== undefined && !items) return undefined;
    return { type: 'array', ...(items ? { items } : {}), ...description };
  }
  if (typeof s.type === 'string' && BASIC.has(s.type)) return { type: s.type as 'string', ...description };
  if (Array.isArray(s.type) && s.type.length && s.type.every((t) => typeof t === 'string' && BASIC.has(t))) {
    return { type: s.type as Array<'string'>, ...description };
  }
  return undefined;
}

/** The request's tools as functions the model may call. */
export function toolFunctions(tools: ToolDefinition[] | undefined): ChatModelFunctions | undefined {
  if (!tools?.length) return undefined;
  const out: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  for (const t of tools) {
    const params = t.function.parameters ? grammarSchema(t.function.parameters) : undefined;
    out[t.function.name] = { description: t.function.description, ...(params ? { params } : {}) };
  }
  return out;
}

/**
 * The chat history node-llama-cpp renders with the model's template, ending
 * with the model turn to generate (empty after a user message). An assistant message's tool calls
 * become function calls on its turn, each with the result of the `tool`
 * message that answers it (or an empty result when none did).
 */
export function chatHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const results = new Map<string, string>();
  for (const m of messages) if (m.role === 'tool') results.set(m.tool_call_id, contentText(m.content));
  const history: ChatHistoryItem[] = [];
  let model: ChatModelResponse | null = null;
  for (const m of messages) {
    if (m.role === 'tool') continue;
    if (m.role === 'assistant') {
      // Consecutive assistant messages are one model turn.
      if (!model) {
        model = { type: 'model', response: [] };
        history.push(model);
      }
      const text = contentText(m.content);
      if (text) model.response.push(text);
      for (const call of m.tool_calls ?? []) {
        const fc: ChatModelFunctionCall = { type: 'functionCall', name: call.function.name, params: parseArguments(call.function.arguments), result: results.get(call.id) ?? '' };
        model.response.push(fc);
      }
      continue;
    }
    model = null;
    const text = contentText(m.content);
    history.push(m.role === 'user' ? { type: 'user', text } : { type: 'system', text });
  }
  // A conversation that ends with tool results continues the model turn that called them.
  if (history.at(-1)?.type !== 'model') history.push({ type: 'model', response: [] });
  return history;
}

function parseArguments(args: string): unknown {
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}
