// Types `env` from cloudflare:test as the Worker's own Env.
import type { Env as HangarEnv } from '../worker/env.ts';

declare global {
  namespace Cloudflare {
    interface Env extends HangarEnv {
      TEST_MIGRATIONS: { name: string; queries: string[] }[];
    }
  }
}
