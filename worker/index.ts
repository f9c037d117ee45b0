/** Worker entry: the API's fetch handler and the Durable Object classes it binds. */
import { handleRequest } from './app.ts';
import { desktopHostRoute } from './desktop/desktop-host.ts';
import type { Env } from './env.ts';

export { ComputerObject } from '../durable-objects/computer-object.ts';
export { HostObject } from '../durable-objects/host-object.ts';
export { RateLimiterObject } from '../durable-objects/rate-limiter-object.ts';

export default {
  // A computer's own host serves its desktop page and VNC socket, not the API.
  fetch: (request, env, ctx) => (desktopHostRoute.match(new URL(request.url).host, env) ? desktopHostRoute.handle(request, env) : handleRequest(request, env, ctx)),
} satisfies ExportedHandler<Env>;
