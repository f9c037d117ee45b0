/** Bindings and secrets of the Worker (wrangler.toml; secrets via `wrangler secret put`). */
import type { ComputerObject } from '../durable-objects/computer-object.ts';
import type { HostObject } from '../durable-objects/host-object.ts';
import type { RateLimiterObject } from '../durable-objects/rate-limiter-object.ts';

export interface Env {
  DB: D1Database;
  COMPUTER: DurableObjectNamespace<ComputerObject>;
  HOST: DurableObjectNamespace<HostObject>;
  RATE_LIMITER: DurableObjectNamespace<RateLimiterObject>;
  /** Secret: bearer token of the operator (admin) API. */
  OPERATOR_TOKEN: string;
  /** Secret: HMAC key for HS256 JWTs minted by POST /auth/token. */
  JWT_SECRET: string;
  /** Secret: base64 of 32 bytes, the AES-GCM key for env values at rest. */
  ENV_ENCRYPTION_KEY: string;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  /** Domain under which computer URLs are shown (desktop_url, sandbox_url); may carry a port locally. */
  COMPUTER_DOMAIN: string;
  /** When a computer's desktop starts: `boot` (default, as soon as it runs) or `first-use`. */
  DESKTOP_START?: string;
  /** Scheme of computer URLs: https (default) or http (the local stack). */
  URL_SCHEME?: string;
  /** Region new computers land in when the caller names none. */
  DEFAULT_REGION: string;
  /** How often agents report each computer's CPU and memory (ms, as a string var). */
  METRICS_INTERVAL_MS?: string;
}
