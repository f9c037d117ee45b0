/**
 * The model behind the managed server: one GGUF loaded with node-llama-cpp
 * (llama.cpp), a context with a fixed number of sequences ("slots") that
 * generate in parallel, a FIFO queue for requests past them, and a separate
 * embedding context made on first use. Every generation is bounded (its
 * max_tokens, the context size) and stops when its client goes away.
 */
import { getLlama, LlamaChat, LlamaCompletion, type ChatHistoryItem, type ChatWrapper, type ChatModelFunctions, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaEmbeddingContext, type LlamaModel } from 'node-llama-cpp';
import { SlotQueue } from './slot-queue.ts';
import { StopMatcher } from './stop-matcher.ts';

export interface EngineOptions {
  modelPath: string;
  /** Requests generated at once. */
  slots: number;
  /** Tokens each slot can hold (prompt and answer). */
  contextSize: number;
  /** CPU threads for evaluation; 0 lets llama.cpp choose. */
  threads: number;
  /** Requests that may wait for a slot before new ones are refused. */
  maxQueue: number;
}

export interface Sampling {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  signal: AbortSignal;
  /** Each piece of text as it is generated. */
  onText: (text: string) => void;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface Generation {
  text: string;
  toolCalls: Array<{ name: string; arguments: string }>;
  finish: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

export class Engine {
  readonly queue: SlotQueue<LlamaContextSequence>;
  readonly model: LlamaModel;
  private readonly llama: Llama;
  private readonly context: LlamaContext;
  private readonly options: EngineOptions;
  /** Resolved once: telling which template the model's chat format is takes hundreds of ms. */
  private readonly chatWrapper: ChatWrapper;
  private embedding: Promise<LlamaEmbeddingContext> | null = null;
  private readonly embedQueue: SlotQueue<true>;

  private constructor(llama: Llama, model: LlamaModel, context: LlamaContext, options: EngineOptions) {
    this.llama = llama;
    this.model = model;
    this.context = context;
    this.options = options;
    const sequences = Array.from({ length: options.slots }, () => context.getSequence());
    const probe = new LlamaChat({ contextSequence: sequences[0], autoDisposeSequence: false });
    this.chatWrapper = probe.chatWrapper;
    probe.dispose({ disposeSequence: false });
    this.queue = new SlotQueue(sequences, options.maxQueue);
    this.embedQueue = new SlotQueue([true], options.maxQueue);
  }

  static async load(options: EngineOptions): Promise<Engine> {
    // Never build llama.cpp from source or fetch a binary at run time: the prebuilt package is the only one used.
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never, progressLogs: false });
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const context = await model.createContext({
      sequences: options.slots,
      contextSize: options.contextSize * options.slots,
      threads: options.threads,
    });
    return new Engine(llama, model, context, options);
  }

  /** Slots generating now, and requests waiting for one. */
  load(): { slots: number; busy: number; queued: number } {
    return { slots: this.options.slots, busy: this.queue.busy + this.embedQueue.busy, queued: this.queue.queued + this.embedQueue.queued };
  }

  /** The next assistant message after `history` (which ends with an empty model turn). */
  async chat(history: ChatHistoryItem[], functions: ChatModelFunctions | undefined, s: Sampling): Promise<Generation> {
    return this.withSlot(s.signal, async (sequence) => {
      const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: this.chatWrapper, autoDisposeSequence: false });
      const before = meter(sequence);
      const out = new Output(s);
      try {
        const r = await chat.generateResponse(history, {
          ...out.options(),
          ...(functions && Object.keys(functions).length ? { functions } : {}),
        });
        const toolCalls = (r.functionCalls ?? []).map((c) => ({ name: c.functionName, arguments: JSON.stringify(c.params ?? {}) }));
        const text = out.end();
        return {
          text,
          toolCalls,
          finish: toolCalls.length ? 'tool_calls' : out.finish(r.metadata.stopReason),
          promptTokens: meter(sequence).input - before.input,
          completionTokens: out.tokens,
        };
      } finally {
        chat.dispose({ disposeSequence: false });
      }
    });
  }

  /** Text that follows `prompt`. */
  async complete(prompt: string, s: Sampling): Promise<Generation> {
    return this.withSlot(s.signal, async (sequence) => {
      const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
      const before = meter(sequence);
      const out = new Output(s);
      try {
        const r = await completion.generateCompletionWithMeta(prompt, out.options());
        const text = out.end();
        return {
          text,
          toolCalls: [],
          finish: out.finish(r.metadata.stopReason),
          promptTokens: meter(sequence).input - before.input,
          completionTokens: out.tokens,
        };
      } finally {
        completion.dispose({ disposeSequence: false });
      }
    });
  }

  /** One vector per input, and the tokens they took. */
  async embed(inputs: string[], signal: AbortSignal): Promise<{ vectors: number[][]; tokens: number }> {
    const slot = await this.embedQueue.acquire(signal);
    try {
      this.embedding ??= this.model.createEmbeddingContext({ contextSize: this.options.contextSize, threads: this.options.threads });
      const ctx = await this.embedding;
      const vectors: number[][] = [];
      let tokens = 0;
      for (const input of inputs) {
        signal.throwIfAborted();
        tokens += this.model.tokenize(input).length;
        vectors.push([...(await ctx.getEmbeddingFor(input)).vector]);
      }
      return { vectors, tokens };
    } finally {
      this.embedQueue.release(slot);
    }
  }

  async close(): Promise<void> {
    await this.context.dispose().catch(() => {});
    if (this.embedding) await (await this.embedding).dispose().catch(() => {});
    await this.model.dispose().catch(() => {});
    await this.llama.dispose().catch(() => {});
  }

  private async withSlot<T>(signal: AbortSignal, fn: (sequence: LlamaContextSequence) => Promise<T>): Promise<T> {
    const sequence = await this.queue.acquire(signal);
    try {
      // Each request starts from an empty sequence: what another client sent never leaks into it.
      await sequence.clearHistory();
      return await fn(sequence);
    } finally {
      this.queue.release(sequence);
    }
  }
}

function meter(sequence: LlamaContextSequence): { input: number } {
  return { input: sequence.tokenMeter.usedInputTokens };
}

/**
 * One generation's output: text passed through the stop sequences to the
 * caller as it comes, tokens counted, and generation cut short (through its
 * own abort signal) at a stop sequence or when the client leaves.
 */
class Output {
  private readonly s: Sampling;
  private readonly matcher: StopMatcher;
  private readonly cut = new AbortController();
  private text = '';
  tokens = 0;

  constructor(s: Sampling) {
    this.s = s;
    this.matcher = new StopMatcher(s.stop);
  }

  options() {
    return {
      signal: AbortSignal.any([this.s.signal, this.cut.signal]),
      stopOnAbortSignal: true,
      maxTokens: this.s.maxTokens,
      temperature: this.s.temperature,
      topP: this.s.topP,
      seed: this.s.seed,
      onTextChunk: (chunk: string) => this.show(this.matcher.push(chunk)),
      onToken: (t: unknown[]) => {
        if (!this.matcher.stopped) this.tokens += t.length;
      },
    };
  }

  /** The whole text shown, once generation is over. */
  end(): string {
    this.show(this.matcher.flush());
    return this.text;
  }

  finish(reason: string): 'stop' | 'length' {
    return !this.matcher.stopped && reason === 'maxTokens' ? 'length' : 'stop';
  }

  private show(text: string): void {
    if (this.matcher.stopped) this.cut.abort(new Error('stop sequence reached'));
    if (!text) return;
    this.text += text;
    this.s.onText(text);
  }
}
