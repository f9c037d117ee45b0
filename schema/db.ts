/** D1 tables as drizzle sees them; schema/migrations/ holds the SQL that makes them. */
import { sqliteTable, text, integer, real, primaryKey } from 'drizzle-orm/sqlite-core';
import { ISOLATIONS } from './isolation.ts';

export const organizations = sqliteTable('organizations', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  slug: text('slug').notNull(),
  credits: real('credits').notNull(),
  rate_limit_per_minute: integer('rate_limit_per_minute'),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
});

export const workspaces = sqliteTable('workspaces', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  slug: text('slug').notNull(),
  name: text('name').notNull(),
  is_default: integer('is_default', { mode: 'boolean' }).notNull(),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
});

export const projects = sqliteTable('projects', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  workspace_id: text('workspace_id').notNull(),
  slug: text('slug').notNull(),
  name: text('name').notNull(),
  is_default: integer('is_default', { mode: 'boolean' }).notNull(),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
});

export const apiKeys = sqliteTable('api_keys', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  name: text('name').notNull(),
  key_hash: text('key_hash').notNull(),
  key_prefix: text('key_prefix').notNull(),
  mode: text('mode', { enum: ['live', 'test'] }).notNull(),
  workspace_ids: text('workspace_ids', { mode: 'json' }).$type<string[] | null>(),
  project_ids: text('project_ids', { mode: 'json' }).$type<string[] | null>(),
  created_at: text('created_at').notNull(),
  last_used_at: text('last_used_at'),
  revoked_at: text('revoked_at'),
});

export const HOST_STATUSES = ['pending', 'online', 'offline', 'error', 'revoked'] as const;
export type HostStatus = (typeof HOST_STATUSES)[number];

export const hosts = sqliteTable('hosts', {
  id: text('id').primaryKey(),
  org_id: text('org_id'),
  kind: text('kind', { enum: ['fleet', 'byo'] }).notNull(),
  name: text('name').notNull(),
  region: text('region').notNull(),
  labels: text('labels', { mode: 'json' }).$type<Record<string, string>>().notNull(),
  status: text('status', { enum: HOST_STATUSES }).notNull(),
  key_hash: text('key_hash').notNull(),
  key_prefix: text('key_prefix').notNull(),
  agent_version: text('agent_version'),
  drivers: text('drivers', { mode: 'json' }).$type<string[]>().notNull(),
  cpus: integer('cpus'),
  memory_mb: integer('memory_mb'),
  /** How the host's VMs run (kvm or tcg); NULL when it offers no VMs. */
  vm_accel: text('vm_accel', { enum: ['kvm', 'tcg'] }),
  last_seen_at: text('last_seen_at'),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
  // Host-mode agents (OpenComputers) say more about their machine (0004).
  os: text('os'),
  os_release: text('os_release'),
  arch: text('arch'),
  hostname: text('hostname'),
  agent_info: text('agent_info', { mode: 'json' }).$type<Record<string, unknown>>(),
  status_reason: text('status_reason'),
  revoked_at: text('revoked_at'),
});
export type HostRow = typeof hosts.$inferSelect;

/** OpenComputers secrets: tenant-wide (host_id NULL) or of one host; values AES-GCM at rest. */
export const ocSecrets = sqliteTable('oc_secrets', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  host_id: text('host_id'),
  name: text('name').notNull(),
  description: text('description'),
  ciphertext: text('ciphertext').notNull(),
  iv: text('iv').notNull(),
  value_bytes: integer('value_bytes').notNull(),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
});

export const computers = sqliteTable('computers', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  workspace_id: text('workspace_id').notNull(),
  project_id: text('project_id').notNull(),
  owner_user_id: text('owner_user_id'),
  name: text('name').notNull(),
  slug: text('slug').notNull(),
  template_type: text('template_type').notNull(),
  size: text('size', { enum: ['small', 'medium', 'large'] }).notNull(),
  vcpus: integer('vcpus').notNull(),
  memory_mb: integer('memory_mb').notNull(),
  /** Which driver makes it: a namespace sandbox or a microVM (schema/isolation.ts). */
  isolation: text('isolation', { enum: ISOLATIONS }).notNull(),
  /** A VM stopped with keep_memory: the next start resumes it where it was. */
  memory_kept: integer('memory_kept', { mode: 'boolean' }).notNull(),
  /** Disk quota in GiB; NULL on computers made before quotas (their size's default). */
  disk_gb: integer('disk_gb'),
  status: text('status').notNull(),
  /** Why the computer is in its status (a failed boot, a lost disk); NULL when nothing needs saying. */
  status_reason: text('status_reason'),
  host_id: text('host_id'),
  region: text('region').notNull(),
  /** The host a move is copying the disk to; NULL when no move is under way. */
  moving_to_host_id: text('moving_to_host_id'),
  external_workspace_id: text('external_workspace_id'),
  external_user_id: text('external_user_id'),
  external_project_id: text('external_project_id'),
  selected_apps: text('selected_apps', { mode: 'json' }).$type<string[]>().notNull(),
  settings: text('settings', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
  ai_config: text('ai_config', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
  agent_session_id: text('agent_session_id'),
  resolution: text('resolution').notNull(),
  auto_stop: integer('auto_stop').notNull(),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
  metadata: text('metadata', { mode: 'json' }).$type<Record<string, string>>().notNull(),
  visibility: text('visibility', { enum: ['public', 'tenant', 'key'] }).notNull(),
  /** The computer's address inside its own network, as its host last reported it; null before its first boot. */
  ip_address: text('ip_address'),
});
export type ComputerRow = typeof computers.$inferSelect;

export const computerEnv = sqliteTable(
  'computer_env',
  {
    computer_id: text('computer_id').notNull(),
    name: text('name').notNull(),
    ciphertext: text('ciphertext').notNull(),
    iv: text('iv').notNull(),
    /** Bytes of the plaintext value (UTF-8), for the limits on a computer's environment. */
    value_bytes: integer('value_bytes').notNull(),
    created_at: text('created_at').notNull(),
    updated_at: text('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.computer_id, t.name] })],
);

export const computerPorts = sqliteTable(
  'computer_ports',
  {
    computer_id: text('computer_id').notNull(),
    port: integer('port').notNull(),
    visibility: text('visibility', { enum: ['public', 'private', 'protected'] }).notNull(),
    created_at: text('created_at').notNull(),
    updated_at: text('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.computer_id, t.port] })],
);

export const creditTransactions = sqliteTable('credit_transactions', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  amount: real('amount').notNull(),
  reason: text('reason').notNull(),
  computer_id: text('computer_id'),
  created_at: text('created_at').notNull(),
});

export const idempotencyKeys = sqliteTable(
  'idempotency_keys',
  {
    org_id: text('org_id').notNull(),
    key: text('key').notNull(),
    fingerprint: text('fingerprint').notNull(),
    state: text('state', { enum: ['running', 'done'] }).notNull(),
    status: integer('status'),
    body: text('body'),
    content_type: text('content_type'),
    created_at: text('created_at').notNull(),
    expires_at: text('expires_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.org_id, t.key] })],
);

export const SNAPSHOT_STATUSES = ['pending', 'ready', 'restoring', 'failed', 'deleted'] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

export const snapshots = sqliteTable('snapshots', {
  id: text('id').primaryKey(),
  org_id: text('org_id').notNull(),
  computer_id: text('computer_id').notNull(),
  workspace_id: text('workspace_id').notNull(),
  project_id: text('project_id').notNull(),
  host_id: text('host_id').notNull(),
  comment: text('comment'),
  status: text('status', { enum: SNAPSHOT_STATUSES }).notNull(),
  error: text('error'),
  rootfs_size_bytes: integer('rootfs_size_bytes'),
  keep: integer('keep', { mode: 'boolean' }).notNull(),
  created_at: text('created_at').notNull(),
  updated_at: text('updated_at').notNull(),
  /** JSON of SnapshotSource (schema/api-snapshots.ts): what the snapshot was taken of. */
  source: text('source').notNull(),
});
export type SnapshotRow = typeof snapshots.$inferSelect;
