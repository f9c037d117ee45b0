/**
 * Malformed input against the real Worker: every body-taking route gets
 * seeded, generated garbage (fuzz-cases.ts); unknown routes, wrong methods,
 * bad path ids and bad query parameters too. Never a 5xx, always the
 * envelope, and nothing changes. FUZZ_SEED=n replays another sequence.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangar, newTenant, operatorClient, rawFetch, type Client, type RawBody, type RawReply } from './client.ts';
import { envelopeProblem, expectEnvelope } from './expect-error.ts';
import { bodyCases, sample, seeded, toJson, type BodyCase } from './fuzz-cases.ts';
import { FUZZ_ROUTES, type FuzzRoute } from './fuzz-routes.ts';
import { COMPUTER_ROUTE_SAMPLES, INTRUDER_MARK } from '../computer-routes.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261123);
const MAX_BODY_BYTES = 1024 * 1024;
const CONCURRENCY = 6;
/** Client addresses of their own for the per-address limits (auth: 20/min, unauthenticated: 60/min). */
const AUTH_IP = '198.51.100.21';
const PUBLIC_IP = '198.51.100.22';

let api: Client;
let op: Client;
let id: string;
let orgId: string;
/** A tenant host (never connected) and its secrets: validation comes before any of them is touched. */
let host: string;
let hsecret: string;
let tsecret: string;
let tunnel: string;

beforeAll(async () => {
  api = await newTenant('fuzz');
  op = operatorClient();
  id = await api.runningComputer('fuzz');
  expect((await api.post(`/computers/${id}/env`, { name: 'FUZZ_VAR', value: 'original' })).status).toBe(201);
  expect((await api.post(`/computers/${id}/ports`, { port: 3000, visibility: 'public' })).status).toBe(201);
  const org = await op.post<{ data: { id: string } }>('/admin/organizations', { name: 'fuzz target', credits: 10 });
  expect(org.status).toBe(201);
  orgId = org.body.data.id;
  host = (await api.post<{ id: string }>('/opencomputers/hosts', { name: 'fuzz-box' })).body.id;
  hsecret = (await api.post<{ id: string }>(`/opencomputers/hosts/${host}/secrets`, { name: 'FUZZ_HOST_SECRET', value: 'original' })).body.id;
  tsecret = (await api.post<{ id: string }>('/opencomputers/secrets', { name: 'FUZZ_TENANT_SECRET', value: 'original' })).body.id;
  tunnel = (await api.post<{ id: string }>(`/opencomputers/hosts/${host}/tunnels`, { target_port: 3000 })).body.id;
  expect([host, hsecret, tsecret, tunnel].every(Boolean)).toBe(true);
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

const seedOf = (s: string) => [...s].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0, SEED >>> 0);

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

function send(route: FuzzRoute, body: RawBody, contentType = 'application/json'): Promise<RawReply> {
  const path = route.path.replace('{id}', id).replace('{org}', orgId).replace('{host}', host).replace('{hsecret}', hsecret).replace('{tsecret}', tsecret).replace('{tunnel}', tunnel);
  const auth = route.auth === 'tenant' ? api.key : route.auth === 'operator' ? hangar().operatorToken : null;
  return rawFetch(hangar().apiUrl + path, route.method, { body, auth, headers: { 'content-type': contentType, 'cf-connecting-ip': AUTH_IP } });
}

/** Everything the fuzzed routes could change, as the API shows it. */
async function snapshot(): Promise<Record<string, string>> {
  const tenant = [`/computers/${id}`, '/computers', `/computers/${id}/env`, `/computers/${id}/ports`, `/computers/${id}/auto-stop`, `/computers/${id}/snapshots`, '/workspaces?page_size=100', '/projects?page_size=100'];
  const oc = `/opencomputers/hosts/${host}`;
  tenant.push('/opencomputers/hosts', oc, `${oc}/exec`, `${oc}/secrets`, `${oc}/tunnels`, '/opencomputers/secrets', '/opencomputers/clusters');
  const org = `/admin/organizations/${orgId}`;
  const operator = [org, `${org}/api-keys`, `${org}/credits`, `${org}/credits/transactions`];
  const out: Record<string, string> = {};
  for (const p of tenant) out[p] = (await api.raw('GET', p)).text;
  for (const p of operator) out[p] = (await op.raw('GET', p)).text;
  // Other organizations' balances move as their computers run: count these lists only.
  for (const p of ['/admin/organizations', '/admin/hosts']) out[p] = String((await op.get<{ page: { total: number } }>(p)).body.page.total);
  return out;
}

/** Why a reply to a malformed body is wrong, or null. */
function bodyProblem(r: RawReply, bytes: number, limit = MAX_BODY_BYTES): string | null {
  if (bytes > limit) return envelopeProblem(r, 413, 'PAYLOAD_TOO_LARGE');
  const p = envelopeProblem(r, 400);
  if (p) return p;
  const code = (JSON.parse(r.text) as { error: { code: string } }).error.code;
  return code === 'VALIDATION_FAILED' || code === 'INVALID_JSON' ? null : `code ${code}`;
}

describe('fuzzed bodies', () => {
  for (const route of FUZZ_ROUTES) {
    it(`${route.method} ${route.path}: every malformed body is refused with the envelope and changes nothing`, async () => {
      const rng = seeded(seedOf(`${route.method} ${route.path}`));
      const all = bodyCases(route.shape, rng);
      const cases: BodyCase[] = route.limit ? sample(all, route.limit, rng) : all;
      const before = await snapshot();
      const failures: string[] = [];
      await pool(cases, CONCURRENCY, async (c) => {
        const problem = bodyProblem(await send(route, c.text, c.contentType), Buffer.byteLength(c.text), route.bodyLimit);
        if (problem) failures.push(`${c.label}: ${problem}`);
      });
      expect(failures, `seed ${SEED}`).toEqual([]);
      expect(await snapshot()).toEqual(before);
      expect(cases.length).toBeGreaterThanOrEqual(route.limit ?? 40);
    });
  }

  it('a body over 1 MiB (10 MiB for a file write) is a 413 on every route, declared or streamed, even when it is otherwise valid', async () => {
    const before = await snapshot();
    const failures: string[] = [];
    for (const route of FUZZ_ROUTES.filter((r) => r.auth !== 'none')) {
      const text = toJson({ ...route.shape.valid, pad: 'a'.repeat(route.bodyLimit ?? MAX_BODY_BYTES) });
      const declared = await send(route, text);
      const chunks = Math.ceil(text.length / 65_536);
      let i = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (i === chunks) return ctl.close();
          ctl.enqueue(new TextEncoder().encode(text.slice(i * 65_536, ++i * 65_536)));
        },
      });
      const streamed = await send(route, stream);
      for (const [how, r] of [['declared', declared], ['streamed', streamed]] as const) {
        const p = envelopeProblem(r, 413, 'PAYLOAD_TOO_LARGE');
        if (p) failures.push(`${route.method} ${route.path} ${how}: ${p}`);
      }
    }
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it('a chunked body of tens of megabytes is a 413 in the envelope, read and dropped, not a reset connection', async () => {
    const failures: string[] = [];
    for (const route of FUZZ_ROUTES.filter((r) => r.path === '/computers/{id}/exec' || r.path === '/auth/token')) {
      const chunk = new Uint8Array(64 * 1024).fill(0x61);
      let left = (32 * 1024 * 1024) / chunk.byteLength;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (left-- === 0) return ctl.close();
          ctl.enqueue(chunk);
        },
      });
      try {
        const p = envelopeProblem(await send(route, stream), 413, 'PAYLOAD_TOO_LARGE');
        if (p) failures.push(`${route.method} ${route.path}: ${p}`);
      } catch (err) {
        failures.push(`${route.method} ${route.path}: ${(err as Error).message} ${String((err as { cause?: unknown }).cause ?? '')}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('a region no host serves is a 422 REGION_UNAVAILABLE (a 5xx would invite retries), and creates nothing', async () => {
    const before = await snapshot();
    const r = await api.raw('POST', '/computers', { body: '{"name":"x","template_type":"miosa-desktop","region":"nowhere-1"}', headers: { 'content-type': 'application/json' } });
    expectEnvelope(r, 422, 'REGION_UNAVAILABLE');
    expect(await snapshot()).toEqual(before);
  });

  it('after all that the computer still runs, with its env var as it was and no fuzz command run', async () => {
    const r = await api.exec(id, 'printenv FUZZ_VAR; test -e /tmp/fuzz-ran && echo ran || echo clean');
    expect(r.body).toMatchObject({ output: 'original\nclean\n', exit_code: 0 });
    expect((await api.get(`/computers/${id}`)).body.status).toBe('running');
  });
});

/** Every path of the API (params filled in) and the methods it answers. */
function routeTable(): [string, string[]][] {
  const c = `/api/v1/computers/${id}`;
  const o = `/api/v1/admin/organizations/${orgId}`;
  const uuid = '550e8400-e29b-41d4-a716-446655440000';
  const post = ['POST'];
  return [
    ['/api/v1/health', ['GET']],
    ['/api/v1/computers', ['GET', 'POST']],
    [c, ['GET', 'PATCH', 'PUT', 'DELETE']],
    ...['start', 'stop', 'restart', 'clone', 'resize', 'move', 'stream-token', 'exec', 'exec/python'].map((a): [string, string[]] => [`${c}/${a}`, post]),
    ...['vnc-credentials', 'urls', 'apps', 'metrics'].map((a): [string, string[]] => [`${c}/${a}`, ['GET']]),
    [`${c}/auto-stop`, ['GET', 'PATCH']],
    [`${c}/events`, ['GET']],
    [`${c}/logs`, ['GET']],
    [`${c}/logs/stream`, ['GET']],
    [`${c}/files`, ['GET', 'DELETE']],
    [`${c}/files/readdir`, ['GET']],
    ...['stat', 'mkdir', 'rename', 'copy', 'chmod', 'write', 'upload', 'export'].map((a): [string, string[]] => [`${c}/files/${a}`, post]),
    [`${c}/files/download`, ['GET']],
    [`${c}/snapshots`, ['GET', 'POST']],
    [`${c}/snapshots/${uuid}`, ['GET', 'PATCH', 'DELETE']],
    [`${c}/snapshots/${uuid}/restore`, post],
    [`${c}/snapshots/${uuid}/events`, ['GET']],
    [`${c}/restore/${uuid}`, post],
    ['/api/v1/snapshots', ['GET']],
    ['/api/v1/files/exports/x.y.z', ['GET']],
    [`${c}/env`, ['GET', 'POST']],
    [`${c}/env/FUZZ_VAR`, ['PATCH', 'DELETE']],
    [`${c}/ports`, ['GET', 'POST']],
    [`${c}/ports/3000`, ['GET', 'PATCH', 'DELETE']],
    [`${c}/ports/3000/rotate-token`, post],
    [`${c}/ports/3000/link`, post],
    [`${c}/tcp/8080`, ['GET']],
    ['/api/v1/workspaces', ['GET', 'POST']],
    [`/api/v1/workspaces/${uuid}`, ['GET', 'DELETE']],
    ['/api/v1/projects', ['GET', 'POST']],
    [`/api/v1/projects/${uuid}`, ['GET']],
    ['/api/v1/auth/token', post],
    ['/api/v1/admin/organizations', ['GET', 'POST']],
    [o, ['GET', 'PATCH']],
    [`${o}/api-keys`, ['GET', 'POST']],
    [`${o}/api-keys/${uuid}`, ['GET', 'DELETE']],
    [`${o}/credits`, ['GET', 'POST']],
    [`${o}/credits/transactions`, ['GET']],
    ['/api/v1/admin/hosts', ['GET', 'POST']],
    [`/api/v1/admin/hosts/${uuid}`, ['GET', 'DELETE']],
    ['/agent/v1/connect', ['GET']],
    [`/agent/v1/computers/${id}/connect`, ['GET']],
    ['/agent/v1/whoami', ['GET']],
    ...openComputersTable(uuid),
  ];
}

/** OpenComputers paths (a tenant host's, jobs, secrets) and the public install files. */
function openComputersTable(uuid: string): [string, string[]][] {
  const oc = '/api/v1/opencomputers';
  const h = `${oc}/hosts/${host}`;
  return [
    [`${oc}/hosts`, ['GET', 'POST']],
    [h, ['GET', 'PATCH', 'DELETE']],
    [`${h}/events`, ['GET']],
    [`${h}/exec`, ['GET', 'POST']],
    [`${h}/exec/${uuid}`, ['GET', 'DELETE']],
    [`${h}/exec/${uuid}/stream`, ['GET']],
    [`${h}/terminal/ticket`, ['POST']],
    [`${h}/secrets`, ['GET', 'POST']],
    [`${h}/secrets/${uuid}`, ['GET', 'PATCH', 'DELETE']],
    [`${oc}/secrets`, ['GET', 'POST']],
    [`${oc}/secrets/${uuid}`, ['GET', 'PATCH', 'DELETE']],
    [`${h}/fs`, ['GET', 'DELETE']],
    ...['list', 'stat', 'download'].map((a): [string, string[]] => [`${h}/fs/${a}`, ['GET']]),
    ...['upload', 'mkdir'].map((a): [string, string[]] => [`${h}/fs/${a}`, ['POST']]),
    [`${h}/fs/delete`, ['DELETE']],
    ['/opencomputers/install.sh', ['GET']],
    ['/opencomputers/agent.mjs', ['GET']],
    ['/opencomputers/ws/terminal', ['GET']],
  ];
}

describe('routes, methods, ids and queries', () => {
  it('an unknown route is a 404 with the envelope, with or without credentials', async () => {
    const paths = ['/', '/api', '/api/v1', '/api/v2/computers', '/api/v1/nope', '/api/v1/computers/x/y/z', `/api/v1/computers/${id}/nope`,
      `/api/v1/computers/${id}/exec/ruby`, '/api/v1//computers', '/api/v1/%F0%9F%98%80',
      `/api/v1/${'a'.repeat(2000)}`, '/agent/v1', '/api/v1/admin'];
    const failures: string[] = [];
    for (const p of paths) {
      for (const auth of [null, api.key]) {
        const r = await rawFetch(hangar().origin + p, 'GET', { auth, headers: { 'cf-connecting-ip': PUBLIC_IP } });
        const problem = envelopeProblem(r, 404, 'NOT_FOUND');
        if (problem) failures.push(`${p.slice(0, 60)}: ${problem}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('a known path with another method is a 405 whose Allow lists exactly the methods it has', async () => {
    const failures: string[] = [];
    for (const [path, allowed] of routeTable()) {
      // OPTIONS is the CORS preflight on every path (see the next test), not a wrong method.
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !allowed.includes(m))) {
        const r = await rawFetch(hangar().origin + path, method, { auth: api.key, body: method === 'GET' ? undefined : '{}' });
        const problem = envelopeProblem(r, 405, 'METHOD_NOT_ALLOWED');
        const allow = (r.headers.get('allow') ?? '').split(',').map((m) => m.trim()).sort().join(',');
        if (problem || allow !== [...allowed].sort().join(',')) failures.push(`${method} ${path}: ${problem ?? `Allow: ${allow}`}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('OPTIONS is a CORS preflight allowing browsers to send the API headers', async () => {
    const r = await rawFetch(`${hangar().origin}/api/v1/computers/${id}/exec`, 'OPTIONS', {});
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    expect(r.headers.get('access-control-allow-methods')).toMatch(/POST/);
  });

  it('a computer id that is not a UUID is a 400 "invalid computer id" on every computer route', async () => {
    const bad = ['not-a-uuid', '123', `${id.slice(0, -1)}Z`, id.replaceAll('-', ''), `${id}-0`, 'undefined', '%20', 'a%2Fb', '%F0%9F%98%80'];
    const failures: string[] = [];
    for (const b of bad) {
      for (const { method, path, body } of COMPUTER_ROUTE_SAMPLES) {
        const r = await api.raw(method, `/computers/${b}${path}`, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        const problem = envelopeProblem(r, 400, 'INVALID_ID');
        const message = problem ? '' : expectEnvelope(r).error.message;
        if (problem || message !== 'invalid computer id') failures.push(`${method} /${b}${path}: ${problem ?? message}`);
      }
    }
    expect(failures).toEqual([]);
    const check = await api.exec(id, `test -e ${INTRUDER_MARK} && echo ran || echo clean`);
    expect(check.body.output).toBe('clean\n');
  });

  it('bad path parameters other than the id are 400s', async () => {
    for (const p of [`/computers/${id}/ports/0`, `/computers/${id}/ports/70000`, `/computers/${id}/ports/abc`, `/computers/${id}/ports/1.5`, `/computers/${id}/ports/-1`]) {
      expectEnvelope(await api.raw('DELETE', p), 400, 'VALIDATION_FAILED', p);
    }
    for (const p of [`/computers/${id}/env/1BAD`, `/computers/${id}/env/A-B`, `/computers/${id}/env/%00`, `/computers/${id}/env/%F0%9F%98%80`]) {
      expectEnvelope(await api.raw('DELETE', p), 400, 'VALIDATION_FAILED', p);
    }
    expect((await api.get(`/computers/${id}/env`)).body).toMatchObject({ page: { total: 1 } });
  });

  it('bad query parameters are 400s naming the parameter', async () => {
    const tenant = [
      '/computers?page=-1', '/computers?page=0', '/computers?page=abc', '/computers?page=1.5', '/computers?page=', '/computers?page=Infinity',
      '/computers?page_size=1000', '/computers?page_size=0', '/computers?per_page=101', '/computers?workspace_id=xyz', '/computers?project_id=',
      `/computers/${id}/metrics?window=xyz`, `/computers/${id}/metrics?window=1H`, `/computers/${id}/metrics?window=`,
      `/computers/${id}/env?page=-1`, `/computers/${id}/ports?page_size=1000`, '/workspaces?page=0', '/projects?page_size=101',
      `/computers/${id}/files?path=${'x'.repeat(4097)}`, `/computers/${id}/files/download?path=`, `/computers/${id}/files/download?path=a%00b`,
      `/computers/${id}/logs?lines=-1`, `/computers/${id}/logs?lines=10001`, `/computers/${id}/logs?lines=abc`, `/computers/${id}/logs?since=x`,
    ];
    const failures: string[] = [];
    for (const p of tenant) {
      const r = await api.raw('GET', p);
      const param = /[?&]([a-z_]+)=/.exec(p)![1];
      const problem = envelopeProblem(r, 400, 'VALIDATION_FAILED');
      const message = problem ? '' : expectEnvelope(r).error.message;
      if (problem || !message.startsWith(`${param}:`)) failures.push(`${p}: ${problem ?? message}`);
    }
    for (const p of ['/admin/organizations?page=-1', '/admin/hosts?status=bogus', '/admin/hosts?page_size=1000']) {
      const problem = envelopeProblem(await op.raw('GET', p), 400, 'VALIDATION_FAILED');
      if (problem) failures.push(`${p}: ${problem}`);
    }
    expect(failures).toEqual([]);
  });
});
