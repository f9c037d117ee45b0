/**
 * Inference clusters (spec/05-opencomputers.txt, Inference Clusters): the
 * create body, the cluster as the API shows it, and the slug rule that names
 * its inference URL.
 */
import { z } from 'zod';
import { DisplayName } from './text.ts';

/** A host's id as the API shows it. */
const HostId = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a host id');

export const CLUSTER_STATUSES = ['provisioning', 'active', 'stopped', 'error'] as const;
export type ClusterStatus = (typeof CLUSTER_STATUSES)[number];

/** Members a cluster may have. */
export const MAX_CLUSTER_HOSTS = 64;

/** Model names as Ollama and llama.cpp users write them (`llama3:70b`, `org/name-q4`); the agent maps them to files. */
export const ClusterModel = z.string().trim().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'must be a model name: letters, digits and . _ : / - (at most 128)').refine((s) => !s.includes('..'), 'must not contain ..');

export const CreateCluster = z.object({
  name: DisplayName,
  model: ClusterModel,
  host_ids: z.array(HostId).min(1, 'host_ids must name at least one host').max(MAX_CLUSTER_HOSTS),
  /** A lower-case DNS label for the URL; made from the name when absent. */
  slug: z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a lower-case DNS label (a-z, 0-9, -)').optional(),
});
export type CreateCluster = z.infer<typeof CreateCluster>;

export interface ClusterView {
  id: string;
  name: string;
  model: string;
  slug: string;
  status: ClusterStatus;
  host_ids: string[];
  inference_url: string;
  created_at: string;
  updated_at: string;
  /** Members and what each is doing; `error` says why a member cannot serve. */
  members: Array<{ host_id: string; state: string; error: string | null }>;
}

/** A DNS label made from a name ("My Cluster!" → "my-cluster"); empty when nothing is left. */
export function slugFrom(name: string): string {
  return name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48)
    .replace(/-+$/, '');
}
