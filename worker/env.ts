/** Bindings and secrets of the Worker (wrangler.toml; secrets via `wrangler secret put`). */
import type { ComputerObject } from '../durable-objects/computer-object.ts';
import type { HostObject } from '../durable-objects/host-object.ts';
import type { RateLimiterObject } from '../durable-objects/rate-limiter-object.ts';
import type { OrgEventsObject } from '../durable-objects/org-events-object.ts';
import type { ClusterObject } from '../durable-objects/cluster-object.ts';
import type { AgentSessionObject } from '../durable-objects/agent-session-object.ts';

export interface Env {
  DB: D1Database;
  COMPUTER: DurableObjectNamespace<ComputerObject>;
  HOST: DurableObjectNamespace<HostObject>;
  RATE_LIMITER: DurableObjectNamespace<RateLimiterObject>;
  /** One per organization (named by its id): its event log. */
  ORG_EVENTS: DurableObjectNamespace<OrgEventsObject>;
  CLUSTER: DurableObjectNamespace<ClusterObject>;
  /** One per AI agent session (named by its id): its loop, state and events (docs/agents.md). */
  AGENT_SESSION: DurableObjectNamespace<AgentSessionObject>;
  /** Secret: bearer token of the operator (admin) API. */
  OPERATOR_TOKEN: string;
  /** Secret: HMAC key for HS256 JWTs minted by POST /auth/token. */
  JWT_SECRET: string;
  /** Secret: base64 of 32 bytes, the AES-GCM key for env values at rest. */
  ENV_ENCRYPTION_KEY: string;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  /** Domain of computers' own hosts (`{slug}.{COMPUTER_DOMAIN}`: desktop_url). May carry a port locally. */
  COMPUTER_DOMAIN: string;
  /** Domain of preview hosts (`{port}-{slug}.sandbox.{PREVIEW_DOMAIN}`), shown as `preview_domain`; COMPUTER_DOMAIN when unset. */
  PREVIEW_DOMAIN?: string;
  /** When a computer's desktop starts: `boot` (as soon as it runs) or `first-use`; unset, `boot` except on VMs of an emulating (TCG) host (durable-objects/desktop/start-policy.ts). */
  DESKTOP_START?: string;
  /** `https` (default) or `http`: the scheme of the URLs Hangar shows for computers (http under npm start). */
  URL_SCHEME?: string;
  /** Largest request body relayed to a port, in bytes (default 100 MiB, Cloudflare's limit on Free and Pro plans). */
  RELAY_MAX_BODY_BYTES?: string;
  /** Region new computers land in when the caller names none. */
  DEFAULT_REGION: string;
  /** Isolation of computers whose create names none: sandbox (if unset) or vm. */
  DEFAULT_ISOLATION?: string;
  /** Bytes a streamed or multipart upload may have (default 100 MiB, the platform's request limit on its smaller plans). */
  MAX_UPLOAD_BYTES?: string;
  /** Credits a snapshot costs per GiB of its size per hour (default 0.001). */
  SNAPSHOT_CREDITS_PER_GIB_HOUR?: string;
  /** How often agents report each computer's CPU and memory (ms, as a string var). */
  METRICS_INTERVAL_MS?: string;
  /** How long a tenant host may be away before its running jobs fail with `host_lost` (seconds; default 300). */
  HOST_LOST_GRACE_S?: string;
  /** The largest upload to a tenant host's files (bytes; default 100 MiB). */
  HOST_UPLOAD_MAX_BYTES?: string;
  /** vCPUs a host may give its computers per CPU it has (default 4; worker/computers/placement.ts). */
  CPU_OVERCOMMIT?: string;
  /** Memory a host may give its computers per MiB it has (default 1: no overcommit). */
  MEMORY_OVERCOMMIT?: string;
  /** Disk quotas of new computers, GiB: one number for all sizes or JSON per size (worker/computers/disk-size.ts). */
  COMPUTER_DISK_GB?: string;
  /** Secret: base URL (with /v1) of the operator's default OpenAI-compatible provider for agent sessions. */
  AGENT_MODEL_BASE_URL?: string;
  /** Secret: that provider's API key. */
  AGENT_MODEL_API_KEY?: string;
  /** The default provider's model for sessions that name none. */
  AGENT_MODEL?: string;
}
