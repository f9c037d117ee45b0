/**
 * `hangar-tiny`: a small llama-architecture model whose weights are made
 * here, from a seeded generator, so a host can serve a real model with
 * nothing to download. Its output is noise; everything around it — loading,
 * tokenizing, the chat template, sampling, streaming, embeddings — is the
 * real llama.cpp path. The same seed and shape always give the same bytes.
 *
 * Two choices make it useful for serving tests: the vocabulary is words and
 * their prefixes (a sentencepiece-style tokenizer with byte fallback), so
 * output reads as words; and the end-of-sequence and other control tokens are
 * kept from ever being likely (every token's embedding carries the same
 * constant in dimension 0, no layer writes to that dimension, and only the
 * control tokens' output rows read it, strongly negatively), so a generation
 * runs to its `max_tokens` and lengths are predictable.
 */
import { mkdir, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeGguf, type MetaValue, type Tensor } from './gguf-writer.ts';
import { seeded } from './seeded-random.ts';

/** The model name hosts answer to without any file of their own. */
export const TINY_MODEL_NAME = 'hangar-tiny';

export interface TinyShape {
  /** Width of the residual stream. */
  embd: number;
  layers: number;
  heads: number;
  /** Width of the feed-forward layer. */
  ff: number;
  /** Tokens of context the model declares. */
  context: number;
  seed: number;
}

export const TINY_SHAPE: TinyShape = { embd: 64, layers: 2, heads: 4, ff: 128, context: 4096, seed: 12 };

const WORDS = `the of and to in is it you that he was for on are with as his they be at one have this from or had by
word but what some we can out other were all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two has look more day could go come did number
sound no most people my over know water than call first who may down side been now find any new work part take get place
made live where after back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too same tell does set three
want air well also play small end put home read hand port large spell add even land here must big high such follow act why
ask men change went light kind off need house picture try us again animal point mother world near build self earth father
host model cluster agent file run test build server token stream node shell disk`.split(/\s+/);

const SPACE = '\u2581';
const CONTROL = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];
/** sentencepiece token types, as llama.cpp reads them. */
const TYPE = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

/** ChatML, which llama.cpp and node-llama-cpp both recognise from the template text. */
const CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The vocabulary: control tokens, the 256 byte tokens, then characters, words and every prefix a merge passes through. */
export function tinyVocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const add = (t: string, score: number, type: number) => {
    tokens.push(t);
    scores.push(score);
    types.push(type);
  };
  CONTROL.forEach((t, i) => add(t, 0, i === 0 ? TYPE.unknown : TYPE.control));
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, TYPE.byte);
  const pieces = new Set<string>([SPACE]);
  for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?\'"-_()/{}[]=+*<>#%&@$') pieces.add(c);
  for (const w of WORDS) {
    const full = SPACE + w;
    // Merges join adjacent pieces into a known piece: every prefix must be one for the whole word to form.
    for (let i = 2; i <= full.length; i++) pieces.add(full.slice(0, i));
  }
  // Longer pieces score higher, so merging prefers to build whole words.
  for (const p of pieces) add(p, -1000 + [...p].length * 10 - tokens.length / 1000, TYPE.normal);
  return { tokens, scores, types };
}

/** The model's metadata and tensors. */
export function tinyModel(shape: TinyShape = TINY_SHAPE): { meta: Record<string, MetaValue>; tensors: Tensor[] } {
  const { embd, layers, heads, ff } = shape;
  const vocab = tinyVocabulary();
  const nVocab = vocab.tokens.length;
  const rand = seeded(shape.seed);
  const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
  // A matrix that maps `inWidth` to `outWidth`, rows contiguous, output row 0 (the constant dimension) left zero.
  const proj = (inWidth: number, outWidth: number, keepRow0 = true) => {
    const m = uniform(inWidth * outWidth, 1 / Math.sqrt(inWidth));
    if (!keepRow0) m.fill(0, 0, inWidth);
    return m;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);

  const embeddings = uniform(embd * nVocab, 1);
  for (let t = 0; t < nVocab; t++) embeddings[t * embd] = 4;
  const output = uniform(embd * nVocab, 1.5);
  for (let t = 0; t < nVocab; t++) output[t * embd] = vocab.types[t] === TYPE.normal ? 0 : -40;

  const tensors: Tensor[] = [
    { name: 'token_embd.weight', dims: [embd, nVocab], data: embeddings },
    { name: 'output_norm.weight', dims: [embd], data: ones(embd) },
    { name: 'output.weight', dims: [embd, nVocab], data: output },
  ];
  for (let l = 0; l < layers; l++) {
    const b = `blk.${l}`;
    tensors.push(
      { name: `${b}.attn_norm.weight`, dims: [embd], data: ones(embd) },
      { name: `${b}.attn_q.weight`, dims: [embd, embd], data: proj(embd, embd) },
      { name: `${b}.attn_k.weight`, dims: [embd, embd], data: proj(embd, embd) },
      { name: `${b}.attn_v.weight`, dims: [embd, embd], data: proj(embd, embd) },
      { name: `${b}.attn_output.weight`, dims: [embd, embd], data: proj(embd, embd, false) },
      { name: `${b}.ffn_norm.weight`, dims: [embd], data: ones(embd) },
      { name: `${b}.ffn_gate.weight`, dims: [embd, ff], data: proj(embd, ff) },
      { name: `${b}.ffn_up.weight`, dims: [embd, ff], data: proj(embd, ff) },
      { name: `${b}.ffn_down.weight`, dims: [ff, embd], data: proj(ff, embd, false) },
    );
  }

  const meta: Record<string, MetaValue> = {
    'general.architecture': { string: 'llama' },
    'general.name': { string: TINY_MODEL_NAME },
    'general.alignment': { u32: 32 },
    'llama.context_length': { u32: shape.context },
    'llama.embedding_length': { u32: embd },
    'llama.block_count': { u32: layers },
    'llama.feed_forward_length': { u32: ff },
    'llama.attention.head_count': { u32: heads },
    'llama.attention.head_count_kv': { u32: heads },
    'llama.attention.layer_norm_rms_epsilon': { f32: 1e-5 },
    'llama.rope.dimension_count': { u32: embd / heads },
    'llama.rope.freq_base': { f32: 10000 },
    'llama.vocab_size': { u32: nVocab },
    'tokenizer.ggml.model': { string: 'llama' },
    'tokenizer.ggml.tokens': { strings: vocab.tokens },
    'tokenizer.ggml.scores': { f32s: vocab.scores },
    'tokenizer.ggml.token_type': { i32s: vocab.types },
    'tokenizer.ggml.unknown_token_id': { u32: 0 },
    'tokenizer.ggml.bos_token_id': { u32: 1 },
    'tokenizer.ggml.eos_token_id': { u32: 2 },
    'tokenizer.ggml.add_bos_token': { bool: true },
    'tokenizer.ggml.add_eos_token': { bool: false },
    'tokenizer.chat_template': { string: CHAT_TEMPLATE },
  };
  return { meta, tensors };
}

/**
 * Writes the tiny model to `file` unless a file of that name is already there
 * (a partly written file never is: it is written beside and renamed).
 */
export async function ensureTinyModel(file: string, shape: TinyShape = TINY_SHAPE): Promise<string> {
  if (await stat(file).then((s) => s.isFile() && s.size > 0, () => false)) return file;
  await mkdir(path.dirname(file), { recursive: true });
  const { meta, tensors } = tinyModel(shape);
  const partial = `${file}.${process.pid}.partial`;
  await writeGguf(partial, meta, tensors);
  await rename(partial, file);
  return file;
}
