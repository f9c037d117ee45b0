/** Worker entry: the API's fetch handler and the Durable Object classes it binds. */
import { handleRequest } from './app.ts';
import { dispatchHost } from './hosts/dispatch.ts';
import type { Env } from './env.ts';

export { ComputerObject } from '../durable-objects/computer-object.ts';
export { HostObject } from '../durable-objects/host-object.ts';
export { RateLimiterObject } from '../durable-objects/rate-limiter-object.ts';
export { OrgEventsObject } from '../durable-objects/org-events-object.ts';
export { ClusterObject } from '../durable-objects/cluster-object.ts';
export { AgentSessionObject } from '../durable-objects/agent-session-object.ts';

export default {
  fetch: (request, env, ctx) => dispatchHost(request, env, ctx) ?? handleRequest(request, env, ctx),
} satisfies ExportedHandler<Env>;
