/**
 * Who may use an exposed port (public / private / protected, and the SDKs'
 * tenant / key), each with its refusals, and Hangar's credentials never
 * reaching the app: inside workerd, the agent peer playing the app.
 */
import { describe, expect, it } from 'vitest';
import { createApiKey, createTenant, expectError, expectJson, operatorFetch, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';
import { expose, previewFetch, previewUrl, scriptedApp, type PreviewComputer } from './preview-fixtures.ts';

useAgentPeers();

const JSON_ACCEPT = { accept: 'application/json' };
const HTML_ACCEPT = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };

async function setup(visibility: string) {
  const w = await world();
  const { computer, peer } = await runningComputer(w);
  const c = computer as PreviewComputer;
  const port = (await expose(w, c.id, 3000, visibility)).data;
  const seen = scriptedApp(peer, (req) => ({ body: `app saw ${req.path}` }));
  return { w, c, peer, port, seen };
}

/** The Set-Cookie value of `name`, as a Cookie header pair. */
function cookieFrom(res: Response, name: string): string {
  const set = res.headers.getSetCookie().find((s) => s.startsWith(`${name}=`));
  if (!set) throw new Error(`no ${name} cookie in ${JSON.stringify(res.headers.getSetCookie())}`);
  return set.split(';')[0];
}

describe('private ports', () => {
  it('refuse requests without a credential (401: a page for browsers, the envelope for others) and nothing reaches the app', async () => {
    const { c, seen } = await setup('private');
    const api = await previewFetch(c, 3000, '/', { headers: JSON_ACCEPT });
    expect(api.status).toBe(401);
    expect((await api.json<{ error: { code: string; message: string } }>()).error.message).toContain('is private');
    const page = await previewFetch(c, 3000, '/', { headers: HTML_ACCEPT });
    expect(page.status).toBe(401);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(seen).toEqual([]);
  });

  it("take the tenant's key, which the app never sees; another tenant's key is a 404 as if the port were not there", async () => {
    const { w, c, seen } = await setup('private');
    const ok = await previewFetch(c, 3000, '/x', { headers: { authorization: `Bearer ${w.tenant.apiKey}` } });
    expect(await ok.text()).toBe('app saw /x');
    expect(seen[0].header('authorization')).toBeUndefined();
    const intruder = await createTenant({ name: 'Intruder' });
    const other = await previewFetch(c, 3000, '/x', { headers: { authorization: `Bearer ${intruder.apiKey}`, ...JSON_ACCEPT } });
    expect(other.status).toBe(404);
    expect(await other.text()).not.toContain(w.tenant.orgId);
    expect(seen).toHaveLength(1);
    const bad = await previewFetch(c, 3000, '/x', { headers: { authorization: 'Bearer msk_live_not_a_real_key_000000000000', ...JSON_ACCEPT } });
    expect(bad.status).toBe(401);
  });

  it('a minted link sets a cookie for that host only, redirects to its path, works once; the cookie opens the port and never reaches the app', async () => {
    const { w, c, seen } = await setup('tenant');
    const link = await expectJson<{ data: { url: string; expires_at: number } }>(await w.api(`/${c.id}/ports/3000/link`, { method: 'POST', body: { path: '/dash?tab=2' } }), 200);
    const u = new URL(link.data.url);
    expect(u.origin).toBe(new URL(previewUrl(c, 3000)).origin);
    expect(u.pathname).toBe('/__hangar/auth');
    expect(link.data.expires_at - Date.now() / 1000).toBeLessThanOrEqual(61);
    const first = await previewFetch(c, 3000, u.pathname + u.search, { headers: HTML_ACCEPT });
    expect(first.status).toBe(302);
    expect(first.headers.get('location')).toBe('/dash?tab=2');
    const setCookie = first.headers.getSetCookie()[0];
    expect(setCookie).toMatch(/^__hangar_preview=[^;]+; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure$/);
    expect(setCookie).not.toMatch(/Domain=/i);
    const cookie = cookieFrom(first, '__hangar_preview');
    const again = await previewFetch(c, 3000, u.pathname + u.search, { headers: JSON_ACCEPT });
    expect(again.status).toBe(401);
    expect(await again.text()).toContain('already used');

    const res = await previewFetch(c, 3000, '/dash?tab=2', { headers: { cookie: `theme=dark; ${cookie}; lang=en` } });
    expect(await res.text()).toBe('app saw /dash?tab=2');
    expect(seen[0].header('cookie')).toBe('theme=dark; lang=en');
    // The cookie is bound to its port: another private port of the same computer does not take it.
    await expose(w, c.id, 3001, 'private');
    expect((await previewFetch(c, 3001, '/', { headers: { cookie, ...JSON_ACCEPT } })).status).toBe(401);
  });

  it('a forged or foreign ticket and a cookie of another computer are refused', async () => {
    const { w, c } = await setup('private');
    const made = await runningComputer(w);
    const other = made.computer as PreviewComputer;
    scriptedApp(made.peer);
    await expose(w, other.id, 3000, 'private');
    const link = await expectJson<{ data: { url: string } }>(await w.api(`/${other.id}/ports/3000/link`, { method: 'POST', body: {} }), 200);
    const u = new URL(link.data.url);
    // The other computer's ticket on this computer's host.
    expect((await previewFetch(c, 3000, u.pathname + u.search, { headers: JSON_ACCEPT })).status).toBe(401);
    expect((await previewFetch(c, 3000, '/__hangar/auth?ticket=garbage', { headers: JSON_ACCEPT })).status).toBe(401);
    const cookie = cookieFrom(await previewFetch(other, 3000, u.pathname + u.search), '__hangar_preview');
    expect((await previewFetch(c, 3000, '/', { headers: { cookie, ...JSON_ACCEPT } })).status).toBe(401);
    expect((await previewFetch(other, 3000, '/', { headers: { cookie } })).status).toBe(200);
  });

  it('a link or cookie minted with an API key that was revoked no longer opens the port', async () => {
    const { w, c } = await setup('private');
    const second = await createApiKey(w.tenant.orgId, { name: 'second' });
    const mint = async () =>
      new URL((await expectJson<{ data: { url: string } }>(await tenantFetch(second.key, `/api/v1/computers/${c.id}/ports/3000/link`, { method: 'POST', body: {} }), 200)).data.url);
    const [a, b] = [await mint(), await mint()];
    const cookie = cookieFrom(await previewFetch(c, 3000, a.pathname + a.search), '__hangar_preview');
    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/api-keys/${second.id}`, { method: 'DELETE' }), 200);
    // (A cookie in use when its key is revoked stops within the 10 s revocation delay of keys; this one is checked afresh.)
    expect((await previewFetch(c, 3000, '/', { headers: { cookie, ...JSON_ACCEPT } })).status).toBe(401);
    expect((await previewFetch(c, 3000, b.pathname + b.search, { headers: JSON_ACCEPT })).status).toBe(401);
  });
});

describe('protected ports', () => {
  it('show their access token to the tenant; ?token= sends a browser on with the token in a cookie; the header works too', async () => {
    const { c, seen, port } = await setup('protected');
    expect(port.access_token).toMatch(/^pt_[A-Za-z0-9_-]{40,}$/);
    expect((await previewFetch(c, 3000, '/', { headers: JSON_ACCEPT })).status).toBe(401);
    expect((await previewFetch(c, 3000, '/?token=pt_wrong', { headers: JSON_ACCEPT })).status).toBe(401);
    const hop = await previewFetch(c, 3000, `/page?a=1&token=${port.access_token}&b=2`, { headers: HTML_ACCEPT });
    expect(hop.status).toBe(302);
    expect(hop.headers.get('location')).toBe('/page?a=1&b=2');
    const cookie = cookieFrom(hop, '__hangar_token');
    expect(await (await previewFetch(c, 3000, '/page?a=1&b=2', { headers: { cookie } })).text()).toBe('app saw /page?a=1&b=2');
    expect(seen[0].header('cookie')).toBeUndefined();
    expect(await (await previewFetch(c, 3000, '/api', { headers: { 'x-hangar-port-token': port.access_token! } })).text()).toBe('app saw /api');
    expect(seen[1].header('x-hangar-port-token')).toBeUndefined();
    // Not a GET: the token is taken off the path and the request goes through.
    const post = await previewFetch(c, 3000, `/hook?token=${port.access_token}`, { method: 'POST', body: 'x' });
    expect(await post.text()).toBe('app saw /hook');
  });

  it('rotating the token refuses the old one at once and ends what it opened; `key` is accepted for protected', async () => {
    const { w, c, peer, port } = await setup('key');
    expect(port.visibility).toBe('protected');
    scriptedApp(peer, () => ({ body: 'streaming', hold: true }));
    const open = await previewFetch(c, 3000, '/stream', { headers: { 'x-hangar-port-token': port.access_token! } });
    const reader = open.body!.getReader();
    await reader.read();
    const rotated = await expectJson<{ data: { access_token: string } }>(await w.api(`/${c.id}/ports/3000/rotate-token`, { method: 'POST' }), 200);
    expect(rotated.data.access_token).not.toBe(port.access_token);
    await expect(reader.read()).rejects.toThrow();
    expect((await previewFetch(c, 3000, '/', { headers: { 'x-hangar-port-token': port.access_token!, ...JSON_ACCEPT } })).status).toBe(401);
    scriptedApp(peer);
    expect((await previewFetch(c, 3000, '/', { headers: { 'x-hangar-port-token': rotated.data.access_token } })).status).toBe(200);
    await expectError(await w.api(`/${c.id}/ports/3000/rotate-token`, { method: 'POST' }).then(async (r) => {
      await expectJson(await w.api(`/${c.id}/ports/3000`, { method: 'PATCH', body: { visibility: 'public' } }), 200);
      return w.api(`/${c.id}/ports/3000/rotate-token`, { method: 'POST' });
    }), 409, 'CONFLICT');
  });
});

describe('visibility and credentials', () => {
  it('a change of visibility applies to the next request', async () => {
    const { w, c } = await setup('public');
    expect((await previewFetch(c, 3000, '/')).status).toBe(200);
    const p = await expectJson<{ data: { visibility: string; access_token: string | null } }>(await w.api(`/${c.id}/ports/3000`, { method: 'PATCH', body: { visibility: 'tenant' } }), 200);
    expect(p.data).toMatchObject({ visibility: 'private', access_token: null });
    expect((await previewFetch(c, 3000, '/', { headers: JSON_ACCEPT })).status).toBe(401);
    const q = await expectJson<{ data: { visibility: string; access_token: string } }>(await w.api(`/${c.id}/ports/3000`, { method: 'PATCH', body: { visibility: 'protected' } }), 200);
    expect(q.data.access_token).toMatch(/^pt_/);
    expect((await previewFetch(c, 3000, `/?token=${q.data.access_token}`, { method: 'POST' })).status).toBe(200);
    await expectJson(await w.api(`/${c.id}/ports/3000`, { method: 'PATCH', body: { visibility: 'public' } }), 200);
    expect((await previewFetch(c, 3000, '/')).status).toBe(200);
  });

  it("Hangar's own credentials never reach an app, even on a public port; the app's own ones do", async () => {
    const { w, c, seen } = await setup('public');
    const { token } = await expectJson<{ token: string }>(await w.api(`/${c.id}/stream-token`, { method: 'POST' }), 200);
    await previewFetch(c, 3000, '/1', { headers: { authorization: `Bearer ${w.tenant.apiKey}`, cookie: '__hangar_preview=x; app=1; __hangar_token=y', 'x-hangar-port-token': 'z', 'x-hangar-relay': 'forged' } });
    await previewFetch(c, 3000, '/2', { headers: { authorization: `Bearer ${token}` } });
    await previewFetch(c, 3000, '/3', { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    await previewFetch(c, 3000, '/4', { headers: { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl' } });
    expect(seen.map((r) => r.path)).toEqual(['/1', '/2', '/3', '/4']);
    expect(seen[0].header('authorization')).toBeUndefined();
    expect(seen[0].header('cookie')).toBe('app=1');
    expect(seen[0].header('x-hangar-port-token')).toBeUndefined();
    expect(seen[0].headers.some(([k]) => k.toLowerCase().startsWith('x-hangar-'))).toBe(false);
    expect(seen[1].header('authorization')).toBeUndefined();
    expect(seen[2].header('authorization')).toBe('Basic dXNlcjpwYXNz');
    expect(seen[3].header('authorization')).toBe('Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl');
  });
});
