/**
 * Where a host finds the file of a model a cluster names. `hangar-tiny` is
 * written on first use (nothing to download); any other name is a GGUF file
 * the host operator put in the models directory, named after the model with
 * `/` and `:` written as `_` (`llama3:70b` → `llama3_70b.gguf`), or found
 * there under the exact name with `.gguf`. A name never reaches outside the
 * directory.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ensureTinyModel, TINY_MODEL_NAME } from './tiny-model.ts';

/** Model names a cluster may carry: what Ollama and llama.cpp users write (`llama3:70b`, `org/name-q4`). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

export class ModelNotFoundError extends Error {}

/** The file names tried for `name`, in order. */
export function candidateFiles(modelsDir: string, name: string): string[] {
  if (!MODEL_NAME.test(name) || name.includes('..')) throw new ModelNotFoundError(`"${name}" is not a model name (letters, digits, . _ : / -)`);
  const flat = name.replace(/[/:]/g, '_');
  return [...new Set([`${flat}.gguf`, `${name.replace(/\//g, '_')}.gguf`])].map((f) => path.join(modelsDir, f));
}

/** The GGUF file serving `name` on this host; ModelNotFoundError says where it was looked for. */
export async function modelFile(modelsDir: string, name: string): Promise<string> {
  if (name === TINY_MODEL_NAME) return ensureTinyModel(path.join(modelsDir, `${TINY_MODEL_NAME}.gguf`));
  const tried = candidateFiles(modelsDir, name);
  for (const f of tried) if (await stat(f).then((s) => s.isFile(), () => false)) return f;
  throw new ModelNotFoundError(`model ${name} is not on this host: put its GGUF file at ${tried[0]}, or serve it with Ollama or llama.cpp and start the agent with --model-server`);
}
