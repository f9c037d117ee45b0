/**
 * OpenComputers tunnels inside workerd: the real Worker and HostObject; a
 * scripted host-mode agent (host-mode-peer.ts) plays the machine's ports on
 * the relay streams the object opens.
 */
import { describe, expect, it } from 'vitest';
import { SELF } from 'cloudflare:test';
import { BASE, createTenant, expectError, expectJson, tenantFetch, uniqueIp, uniqueSlug } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { scriptedApp } from './preview-fixtures.ts';

useAgentPeers();

interface TunnelView {
  id: string;
  host_id: string;
  slug: string;
  target_port: number;
  auth_mode: string;
  public_url: string;
  host_url: string;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

async function onlineHost() {
  const t = await createTenant();
  const h = await registerTenantHost(t.apiKey);
  const peer = await HostModePeer.online(h.key);
  const api = (path: string, init: Parameters<typeof tenantFetch>[2] = {}) => tenantFetch(t.apiKey, `${OC}/hosts/${h.id}${path}`, init);
  const create = async (body: Record<string, unknown>) => expectJson<TunnelView>(await api('/tunnels', { method: 'POST', body }), 201);
  return { t, h, peer, api, create };
}

/** A request through a tunnel: on the API host under /t/{slug}, or on the tunnel's own host. */
function via(path: string, init: RequestInit & { host?: string } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('cf-connecting-ip')) headers.set('cf-connecting-ip', uniqueIp());
  const url = init.host ? `https://${init.host}${path}` : `${BASE}${path}`;
  return SELF.fetch(url, { redirect: 'manual', ...init, headers });
}

const cookieOf = (res: Response) => res.headers.getSetCookie()[0]?.split(';')[0] ?? '';

describe('tunnel records', () => {
  it('creates a tunnel with a generated or a chosen slug, shows both of its URLs, and never its password', async () => {
    const { create, api, h } = await onlineHost();
    const gen = await create({ target_port: 3000 });
    expect(gen).toMatchObject({ host_id: h.id, target_port: 3000, auth_mode: 'public', enabled: true });
    expect(gen.slug).toMatch(/^tunnel-[a-z0-9]{8}$/);
    expect(gen.public_url).toBe(`${BASE}/t/${gen.slug}`);
    expect(gen.host_url).toBe(`https://${gen.slug}.t.localhost`);
    const slug = uniqueSlug('my-app');
    const pw = await create({ target_port: 8080, slug, auth_mode: 'password', password: 'correct horse' });
    expect(pw.slug).toBe(slug);
    expect(JSON.stringify(pw)).not.toMatch(/password_hash|correct horse|pbkdf2/);
    const list = await expectJson<{ data: TunnelView[]; meta: unknown }>(await api('/tunnels'), 200);
    expect(list.data.map((x) => x.id)).toEqual([gen.id, pw.id]);
    expect(list.meta).toEqual({ total: 2, page: 1, per_page: expect.any(Number) });
    expect(JSON.stringify(list)).not.toMatch(/pbkdf2|correct horse/);
    const got = await expectJson<TunnelView>(await api(`/tunnels/${pw.id}`), 200);
    expect(got).toMatchObject({ id: pw.id, auth_mode: 'password' });
    const patched = await expectJson<TunnelView>(await api(`/tunnels/${pw.id}`, { method: 'PATCH', body: { target_port: 9090, enabled: false } }), 200);
    expect(patched).toMatchObject({ target_port: 9090, enabled: false, auth_mode: 'password' });
    expect((await api(`/tunnels/${pw.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectError(await api(`/tunnels/${pw.id}`), 404, 'NOT_FOUND');
  });

  it('a slug is unique across the deployment (409), and bad bodies are 400s in the envelope', async () => {
    const a = await onlineHost();
    const b = await onlineHost();
    const slug = uniqueSlug('taken');
    await a.create({ target_port: 3000, slug });
    await expectError(await b.api('/tunnels', { method: 'POST', body: { target_port: 3000, slug } }), 409, 'CONFLICT');
    for (const body of [
      {},
      { target_port: 0 },
      { target_port: 65536 },
      { target_port: 3000, slug: 'Upper' },
      { target_port: 3000, slug: '-lead' },
      { target_port: 3000, auth_mode: 'password' },
      { target_port: 3000, auth_mode: 'password', password: 'short' },
      { target_port: 3000, password: 'only for password mode' },
      { target_port: 3000, auth_mode: 'tenant' },
    ]) {
      await expectError(await a.api('/tunnels', { method: 'POST', body }), 400, 'VALIDATION_FAILED');
    }
    const t = await a.create({ target_port: 3000 });
    await expectError(await a.api(`/tunnels/${t.id}`, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED');
    await expectError(await a.api(`/tunnels/${t.id}`, { method: 'PATCH', body: { auth_mode: 'password' } }), 400, 'VALIDATION_FAILED');
    await expectError(await a.api(`/tunnels/${t.id}`, { method: 'PATCH', body: { password: 'not a password tunnel' } }), 400, 'VALIDATION_FAILED');
    await expectError(await a.api('/tunnels/not-an-id'), 400, 'INVALID_ID');
  });
});

describe('traffic through a tunnel', () => {
  it('under /t/{slug}: the prefix is taken off, sent as X-Forwarded-Prefix, and put back on redirects and cookie paths', async () => {
    const { peer, create } = await onlineHost();
    const t = await create({ target_port: 5173, slug: uniqueSlug('vite') });
    const seen = scriptedApp(peer, (req) =>
      req.path === '/go'
        ? { status: 302, headers: [['location', '/login?next=%2F'], ['set-cookie', 'sid=1; Path=/; HttpOnly'], ['set-cookie', 'pref=2; Path=/app']] }
        : { body: `app saw ${req.method} ${req.path}` },
    );
    const bare = await via(`/t/${t.slug}?x=1`);
    expect(bare.status).toBe(308);
    expect(bare.headers.get('location')).toBe(`/t/${t.slug}/?x=1`);
    const res = await via(`/t/${t.slug}/a/b?c=d`, { headers: { authorization: 'Bearer app-token-not-ours' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('app saw GET /a/b?c=d');
    expect(seen[0].stream.open.target).toEqual({ kind: 'host_tcp', port: 5173 });
    expect(seen[0].header('x-forwarded-prefix')).toBe(`/t/${t.slug}`);
    expect(seen[0].header('authorization')).toBe('Bearer app-token-not-ours');
    const redirect = await via(`/t/${t.slug}/go`);
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`/t/${t.slug}/login?next=%2F`);
    expect(redirect.headers.getSetCookie()).toEqual([`sid=1; Path=/t/${t.slug}/; HttpOnly`, `pref=2; Path=/t/${t.slug}/app`]);
  });

  it('on its own host {slug}.t.{domain} the app gets the path as it is and its answers pass unchanged', async () => {
    const { peer, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('own') });
    const seen = scriptedApp(peer, () => ({ status: 302, headers: [['location', '/login'], ['set-cookie', 'sid=1; Path=/']] }));
    const res = await via('/x?y=1', { host: `${t.slug}.t.localhost` });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/login');
    expect(res.headers.getSetCookie()).toEqual(['sid=1; Path=/']);
    expect(seen[0].path).toBe('/x?y=1');
    expect(seen[0].header('x-forwarded-prefix')).toBeUndefined();
    expect(seen[0].header('host')).toBe(`${t.slug}.t.localhost`);
  });

  it('passes request bodies both ways, and an unknown slug is a 404 page or envelope', async () => {
    const { peer, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('body') });
    scriptedApp(peer, (req) => ({ body: `${req.method} ${req.body().byteLength}` }));
    const body = new Uint8Array(300_000).map((_, i) => i % 251);
    expect(await (await via(`/t/${t.slug}/up`, { method: 'PUT', body })).text()).toBe('PUT 300000');
    await expectError(await via(`/t/${uniqueSlug('nobody')}/`), 404, 'NOT_FOUND');
    const page = await via(`/t/${uniqueSlug('nobody')}/`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(404);
    expect(page.headers.get('content-type')).toContain('text/html');
    await expectError(await via(`/t/${t.slug}/__hangar/anything`), 404, 'NOT_FOUND');
  });

  it('a disabled tunnel is a 404 that never reaches the host; a host whose agent is away is a 503 saying so', async () => {
    const { peer, api, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('off'), enabled: false });
    scriptedApp(peer);
    const off = await expectError(await via(`/t/${t.slug}/`), 404, 'NOT_FOUND');
    expect(off.error.message).toContain('disabled');
    expect(peer.relay.streams.size).toBe(0);
    await expectJson(await api(`/tunnels/${t.id}`, { method: 'PATCH', body: { enabled: true } }), 200);
    expect((await via(`/t/${t.slug}/`)).status).toBe(200);
    peer.close();
    // The host is offline once its object has seen the socket go.
    for (let status = ''; status !== 'offline'; ) status = (await expectJson<{ status: string }>(await api(''), 200)).status;
    const offline = await expectError(await via(`/t/${t.slug}/`), 503, 'HOST_OFFLINE');
    expect(offline.error.message).toContain('offline');
  });

  it('disabling or deleting a tunnel ends the connections open through it', async () => {
    const { peer, api, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('held') });
    scriptedApp(peer, () => ({ headers: [['content-type', 'text/event-stream']], body: 'data: 1\n\n', hold: true }));
    const res = await via(`/t/${t.slug}/events`);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: 1\n\n');
    const stream = [...peer.relay.streams.values()][0];
    await expectJson(await api(`/tunnels/${t.id}`, { method: 'PATCH', body: { enabled: false } }), 200);
    await peer.relay.until(() => stream.reset, 'the reset of the open connection');
    expect(stream.reset?.code).toBe('closed');
    await expect(reader.read()).rejects.toThrow();
  });
});

describe('who may use a tunnel', () => {
  it('tenant_only: refused without a credential, 404 for another tenant, open to its own key (which the app never sees) and to a minted link once', async () => {
    const { peer, api, create, t: tenant } = await onlineHost();
    const other = await createTenant();
    const t = await create({ target_port: 3000, slug: uniqueSlug('team'), auth_mode: 'tenant_only' });
    const seen = scriptedApp(peer, () => ({ body: 'private' }));
    await expectError(await via(`/t/${t.slug}/`), 401, 'UNAUTHORIZED');
    await expectError(await via(`/t/${t.slug}/`, { headers: { authorization: `Bearer ${other.apiKey}` } }), 404, 'NOT_FOUND');
    expect(seen).toHaveLength(0);
    const mine = await via(`/t/${t.slug}/`, { headers: { authorization: `Bearer ${tenant.apiKey}` } });
    expect(await mine.text()).toBe('private');
    expect(seen[0].header('authorization')).toBeUndefined();

    const link = await expectJson<{ data: { url: string; path_url: string } }>(await api(`/tunnels/${t.id}/link`, { method: 'POST', body: { path: '/dash?x=1' } }), 200);
    const u = new URL(link.data.path_url);
    expect(u.pathname).toBe(`/t/${t.slug}/__hangar/auth`);
    const hop = await via(u.pathname + u.search);
    expect(hop.status).toBe(302);
    expect(hop.headers.get('location')).toBe(`/t/${t.slug}/dash?x=1`);
    expect(hop.headers.get('set-cookie')).toMatch(new RegExp(`^__hangar_tunnel=[^;]+; Path=/t/${t.slug}; .*HttpOnly`));
    const withCookie = await via(`/t/${t.slug}/dash`, { headers: { cookie: `${cookieOf(hop)}; theirs=1` } });
    expect(await withCookie.text()).toBe('private');
    expect(seen.at(-1)!.header('cookie')).toBe('theirs=1');
    await expectError(await via(u.pathname + u.search), 401, 'UNAUTHORIZED'); // used once
    // The host form's link works on the tunnel's own host.
    const own = new URL(link.data.url);
    expect(own.host).toBe(`${t.slug}.t.localhost`);
    const ownHop = await via(own.pathname + own.search, { host: own.host });
    expect(ownHop.status).toBe(302);
    expect(ownHop.headers.get('set-cookie')).toContain('Path=/;');
  });

  it('password: API clients give it in the header or as HTTP Basic (not passed on); browsers log in on a page and keep a cookie a new password ends', async () => {
    const { peer, api, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('pw'), auth_mode: 'password', password: 'correct horse' });
    const seen = scriptedApp(peer, () => ({ body: 'in' }));
    const challenge = await expectError(await via(`/t/${t.slug}/`), 401, 'UNAUTHORIZED');
    expect(challenge.error.message).toContain('x-hangar-tunnel-password');
    await expectError(await via(`/t/${t.slug}/`, { headers: { 'x-hangar-tunnel-password': 'wrong' } }), 401, 'UNAUTHORIZED');
    expect(await (await via(`/t/${t.slug}/`, { headers: { 'x-hangar-tunnel-password': 'correct horse' } })).text()).toBe('in');
    expect(seen[0].header('x-hangar-tunnel-password')).toBeUndefined();
    expect(await (await via(`/t/${t.slug}/`, { headers: { authorization: `Basic ${btoa('me:correct horse')}` } })).text()).toBe('in');
    expect(seen[1].header('authorization')).toBeUndefined();

    const page = await via(`/t/${t.slug}/deep?q=1`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).toContain(`action="/t/${t.slug}/__hangar/login"`);
    expect(html).toContain('value="/deep?q=1"');
    const login = (password: string) =>
      via(`/t/${t.slug}/__hangar/login`, { method: 'POST', body: new URLSearchParams({ password, next: '/deep?q=1' }), headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' } });
    const bad = await login('nope');
    expect(bad.status).toBe(401);
    expect(await bad.text()).toContain('not right');
    const good = await login('correct horse');
    expect(good.status).toBe(303);
    expect(good.headers.get('location')).toBe(`/t/${t.slug}/deep?q=1`);
    const cookie = cookieOf(good);
    expect(await (await via(`/t/${t.slug}/deep`, { headers: { cookie } })).text()).toBe('in');
    await expectJson(await api(`/tunnels/${t.id}`, { method: 'PATCH', body: { password: 'a brand new one' } }), 200);
    await expectError(await via(`/t/${t.slug}/deep`, { headers: { cookie } }), 401, 'UNAUTHORIZED');
    await expectError(await via(`/t/${t.slug}/`, { headers: { 'x-hangar-tunnel-password': 'correct horse' } }), 401, 'UNAUTHORIZED');
  });

  it('password: wrong guesses are limited per client address (429 with Retry-After), and the limit does not lock others out', async () => {
    const { peer, create } = await onlineHost();
    const t = await create({ target_port: 3000, slug: uniqueSlug('guess'), auth_mode: 'password', password: 'correct horse' });
    scriptedApp(peer, () => ({ body: 'in' }));
    const ip = uniqueIp();
    const guess = (password: string, from = ip) => via(`/t/${t.slug}/`, { headers: { 'x-hangar-tunnel-password': password, 'cf-connecting-ip': from } });
    for (let i = 0; i < 10; i++) await expectError(await guess(`guess-${i}`), 401, 'UNAUTHORIZED');
    const limited = await guess('correct horse');
    await expectError(limited, 429, 'RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await (await guess('correct horse', uniqueIp())).text()).toBe('in');
  });
});
