/**
 * The managed model server as its own process (the agent starts it, so a
 * model that crashes llama.cpp or eats the CPU never takes the agent down):
 *
 *   node host-agent/model-server/main.ts --model NAME --models-dir DIR [--port 0] [--slots 4] [--ctx 4096] [--threads 0]
 *
 * It listens on loopback only and prints one JSON line to stdout when ready,
 * `{"event":"listening","port":N,"model":"NAME"}`; failures go to stderr and
 * end it with a non-zero code.
 */
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { Engine } from './engine.ts';
import { createModelServer } from './openai-server.ts';
import { modelFile } from '../models/model-files.ts';

const Args = z.object({
  model: z.string().min(1, '--model names the model to serve'),
  modelsDir: z.string().min(1),
  host: z.string().default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65535).default(0),
  slots: z.coerce.number().int().min(1).max(64).default(4),
  ctx: z.coerce.number().int().min(256).max(1 << 20).default(4096),
  threads: z.coerce.number().int().min(0).max(1024).default(0),
  queue: z.coerce.number().int().min(0).max(100_000).default(256),
});

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'models-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      slots: { type: 'string' },
      ctx: { type: 'string' },
      threads: { type: 'string' },
      queue: { type: 'string' },
    },
  });
  const parsed = Args.safeParse({ ...values, modelsDir: values['models-dir'] });
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const a = parsed.data;
  const file = await modelFile(a.modelsDir, a.model);
  const engine = await Engine.load({ modelPath: file, slots: a.slots, contextSize: a.ctx, threads: a.threads, maxQueue: a.queue });
  const server = createModelServer(engine, { modelId: a.model });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(a.port, a.host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  process.stdout.write(`${JSON.stringify({ event: 'listening', port, model: a.model })}\n`);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void engine.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`model server: ${(e as Error)?.message ?? String(e)}\n`);
  process.exit(1);
});
