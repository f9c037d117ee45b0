/**
 * Agent protocol 1.9: a tenant host serving models for inference clusters.
 * On the host socket of a host-mode agent:
 *  - server → agent `models.serve {id, cluster_id, model}`: serve `model`
 *    for the cluster (a server already there, or one the agent starts); the
 *    result is the member's status once the server is ready or has failed;
 *  - server → agent `models.unserve {id, cluster_id}`: stop serving it for
 *    that cluster (a managed server no cluster needs is stopped); result `{}`;
 *  - agent → server `models.status {statuses}`: every change of a served
 *    cluster's state or load, and all of them after each (re)connect.
 * Requests are answered by the usual `result` message.
 */
import { z } from 'zod';

export const MODELS_MINOR = 9;

const Id = z.string().min(1).max(64);
export const ModelName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/);

export const ModelsServe = z.object({ type: z.literal('models.serve'), id: z.string().max(64), cluster_id: Id, model: ModelName });
export const ModelsUnserve = z.object({ type: z.literal('models.unserve'), id: z.string().max(64), cluster_id: Id });
export const ModelsRequest = z.discriminatedUnion('type', [ModelsServe, ModelsUnserve]);
export type ModelsRequest = z.infer<typeof ModelsRequest>;

const Count = z.number().int().nonnegative().max(1_000_000);

/** One cluster's member on this host, as its agent sees it. */
export const ServingStatus = z.object({
  cluster_id: Id,
  model: ModelName,
  state: z.enum(['starting', 'ready', 'unhealthy', 'error']),
  port: z.number().int().min(0).max(65535),
  managed: z.boolean(),
  busy: Count.optional(),
  queued: Count.optional(),
  slots: Count.optional(),
  error: z.string().max(2048).optional(),
});
export type ServingStatus = z.infer<typeof ServingStatus>;

export const ModelsStatus = z.object({ type: z.literal('models.status'), statuses: z.array(ServingStatus).max(1024) });
export type ModelsStatus = z.infer<typeof ModelsStatus>;

export const MODELS_RESULT_SCHEMAS = {
  'models.serve': ServingStatus,
  'models.unserve': z.object({}),
} as const;
