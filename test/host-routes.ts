/**
 * Every tenant route that takes a tenant host's id (or an id under one),
 * each with a request that would pass validation, for the tests that walk
 * them all with another tenant's key. test/worker/opencomputers-isolation.test.ts
 * checks this list against the Worker's route table, so a new route cannot
 * be left out. `{job}`, `{secret}`, `{tunnel}` and `{session}` stand for ids of the owner's.
 */
export interface HostRouteSample {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** After /api/v1/opencomputers/hosts/{id} (or, with `tenant`, after /api/v1/opencomputers). */
  path: string;
  /** The route's path as the route table has it. */
  pattern: string;
  body?: unknown;
}

/** What a command sent by one of these requests would leave behind in the agent user's home, had it run. */
export const HOST_INTRUDER_MARK = 'host-intruder-was-here';

const OC = '/api/v1/opencomputers';
const h = (method: HostRouteSample['method'], path: string, pattern: string, body?: unknown): HostRouteSample => ({
  method,
  path,
  pattern: `${OC}/hosts/:id${pattern}`,
  body,
});

export const HOST_ROUTE_SAMPLES: HostRouteSample[] = [
  h('GET', '', ''),
  h('PATCH', '', '', { name: 'stolen', labels: { owner: 'intruder' } }),
  h('GET', '/events', '/events'),
  h('POST', '/exec', '/exec', { command: `touch ${HOST_INTRUDER_MARK}` }),
  h('GET', '/exec', '/exec'),
  h('GET', '/exec/{job}', '/exec/:job_id'),
  h('GET', '/exec/{job}/stream', '/exec/:job_id/stream'),
  h('DELETE', '/exec/{job}', '/exec/:job_id'),
  h('POST', '/terminal/ticket', '/terminal/ticket', {}),
  h('POST', '/desktop/ticket', '/desktop/ticket', {}),
  h('GET', '/secrets', '/secrets'),
  h('POST', '/secrets', '/secrets', { name: 'INJECTED', value: 'x' }),
  h('GET', '/secrets/{secret}', '/secrets/:secret_id'),
  h('PATCH', '/secrets/{secret}', '/secrets/:secret_id', { value: 'overwritten' }),
  h('DELETE', '/secrets/{secret}', '/secrets/:secret_id'),
  h('GET', '/fs/list?path=.', '/fs/list'),
  h('GET', '/fs?path=.', '/fs'),
  h('GET', '/fs/stat?path=owner.txt', '/fs/stat'),
  h('GET', '/fs/download?path=owner.txt', '/fs/download'),
  h('POST', `/fs/upload?path=${HOST_INTRUDER_MARK}`, '/fs/upload', { intruder: true }),
  h('POST', '/fs/mkdir', '/fs/mkdir', { path: `${HOST_INTRUDER_MARK}-dir` }),
  h('DELETE', '/fs/delete?path=owner.txt', '/fs/delete'),
  h('DELETE', '/fs?path=owner.txt&recursive=true', '/fs'),
  h('GET', '/tunnels', '/tunnels'),
  h('POST', '/tunnels', '/tunnels', { target_port: 22, auth_mode: 'public' }),
  h('GET', '/tunnels/{tunnel}', '/tunnels/:tunnel_id'),
  h('PATCH', '/tunnels/{tunnel}', '/tunnels/:tunnel_id', { auth_mode: 'public', enabled: true }),
  h('POST', '/tunnels/{tunnel}/link', '/tunnels/:tunnel_id/link', {}),
  h('DELETE', '/tunnels/{tunnel}', '/tunnels/:tunnel_id'),
  h('POST', '/agent/dispatch', '/agent/dispatch', { task: `touch ${HOST_INTRUDER_MARK}` }),
  h('GET', '/agent/sessions', '/agent/sessions'),
  h('GET', '/agent/sessions/{session}', '/agent/sessions/:session_id'),
  h('GET', '/agent/sessions/{session}/stream', '/agent/sessions/:session_id/stream'),
  h('GET', '/agent/sessions/{session}/events', '/agent/sessions/:session_id/events'),
  h('DELETE', '/agent/sessions/{session}', '/agent/sessions/:session_id'),
  // Last: it would revoke the host.
  h('DELETE', '', ''),
];

/** The tenant-wide secret routes that take a secret's id. */
export const TENANT_SECRET_ROUTE_SAMPLES: HostRouteSample[] = [
  { method: 'GET', path: '/secrets/{tsecret}', pattern: `${OC}/secrets/:secret_id` },
  { method: 'PATCH', path: '/secrets/{tsecret}', pattern: `${OC}/secrets/:secret_id`, body: { value: 'overwritten' } },
  { method: 'DELETE', path: '/secrets/{tsecret}', pattern: `${OC}/secrets/:secret_id` },
];

/** Every route that takes an inference cluster's id; `{cluster}` is the owner's. */
export const CLUSTER_ROUTE_SAMPLES: HostRouteSample[] = [
  { method: 'GET', path: '/clusters/{cluster}', pattern: `${OC}/clusters/:id` },
  { method: 'POST', path: '/clusters/{cluster}/stop', pattern: `${OC}/clusters/:id/stop` },
  { method: 'POST', path: '/clusters/{cluster}/start', pattern: `${OC}/clusters/:id/start` },
  // Last: it would delete the cluster.
  { method: 'DELETE', path: '/clusters/{cluster}', pattern: `${OC}/clusters/:id` },
];
