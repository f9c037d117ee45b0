/**
 * The parts of tunnels that need no host: addresses, the prefix put back on
 * an app's redirects and cookies, password hashes (PBKDF2 as workerd allows
 * it), the access decision and the wrong-password limit.
 */
import { describe, expect, it } from 'vitest';
import { env } from 'cloudflare:test';
import type { Env } from '../../worker/env.ts';
import { tunnelFromHost, tunnelFromPath } from '../../worker/tunnels/tunnel-address.ts';
import { prefixHead, prefixReference, prefixSetCookie } from '../../worker/tunnels/tunnel-prefix.ts';
import { checkPassword, hashPassword, hashVersion } from '../../worker/tunnels/tunnel-password.ts';
import { decideTunnelAccess, type TunnelAccessRecord } from '../../worker/tunnels/tunnel-auth.ts';
import { passwordOf } from '../../worker/tunnels/tunnel-credentials.ts';
import { FailureLimit, PER_CLIENT, PER_TUNNEL, WINDOW_MS } from '../../durable-objects/relay/failure-limit.ts';
import type { TunnelCaller } from '../../durable-objects/relay/relay-request.ts';

const E = env as unknown as Env;

describe('tunnel addresses', () => {
  it('{slug}.t.{domain} and /t/{slug}/… name a tunnel; nothing else does', () => {
    expect(tunnelFromHost('my-app.t.localhost', { ...E, PREVIEW_DOMAIN: 'localhost' })).toBe('my-app');
    expect(tunnelFromHost('MY-APP.t.example.com', { ...E, PREVIEW_DOMAIN: 'example.com' })).toBe('my-app');
    expect(tunnelFromHost('a.b.t.example.com', { ...E, PREVIEW_DOMAIN: 'example.com' })).toBeNull();
    expect(tunnelFromHost('3000-x.sandbox.example.com', { ...E, PREVIEW_DOMAIN: 'example.com' })).toBeNull();
    expect(tunnelFromPath(new URL('https://api.example.com/t/my-app/x/y?q=1'))).toEqual({ slug: 'my-app', prefix: '/t/my-app', rest: '/x/y?q=1' });
    expect(tunnelFromPath(new URL('https://api.example.com/t/my-app'))).toEqual({ slug: 'my-app', prefix: '/t/my-app', rest: null });
    expect(tunnelFromPath(new URL('https://api.example.com/t/-bad-/'))).toBeNull();
    expect(tunnelFromPath(new URL('https://api.example.com/api/v1/t/x'))).toBeNull();
  });
});

describe('the prefix put back on what an app sends', () => {
  const P = '/t/my-app';
  it('Location: path-absolute and own-host absolute URLs go under the prefix; relative ones, other hosts and already-prefixed ones stay', () => {
    expect(prefixReference('/login?next=%2F', P, 'api.example.com')).toBe('/t/my-app/login?next=%2F');
    expect(prefixReference('/', P, 'api.example.com')).toBe('/t/my-app/');
    expect(prefixReference('http://api.example.com/x', P, 'api.example.com')).toBe('http://api.example.com/t/my-app/x');
    expect(prefixReference('//api.example.com/x', P, 'api.example.com')).toBe('//api.example.com/t/my-app/x');
    expect(prefixReference('https://other.example.com/x', P, 'api.example.com')).toBe('https://other.example.com/x');
    expect(prefixReference('next/page', P, 'api.example.com')).toBe('next/page');
    expect(prefixReference('/t/my-app/already', P, 'api.example.com')).toBe('/t/my-app/already');
    expect(prefixReference('mailto:a@b', P, 'api.example.com')).toBe('mailto:a@b');
  });

  it('Set-Cookie: an explicit Path goes under the prefix, every cookie kept separate', () => {
    expect(prefixSetCookie('sid=1; Path=/; HttpOnly', P)).toBe('sid=1; Path=/t/my-app/; HttpOnly');
    expect(prefixSetCookie('a=2; path=/app; Secure', P)).toBe('a=2; path=/t/my-app/app; Secure');
    expect(prefixSetCookie('b=3; Max-Age=10', P)).toBe('b=3; Max-Age=10');
    const h = new Headers({ location: '/home' });
    h.append('set-cookie', 'x=1; Path=/');
    h.append('set-cookie', 'y=2; Path=/deep');
    prefixHead(h, P, 'api.example.com');
    expect(h.get('location')).toBe('/t/my-app/home');
    expect(h.getSetCookie()).toEqual(['x=1; Path=/t/my-app/', 'y=2; Path=/t/my-app/deep']);
  });
});

describe('tunnel passwords', () => {
  it('are kept as PBKDF2 hashes that check the right password only', async () => {
    const stored = await hashPassword('correct horse');
    expect(stored).toMatch(/^pbkdf2\$100000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(stored).not.toContain('correct');
    expect(await checkPassword('correct horse', stored)).toBe(true);
    expect(await checkPassword('correct hors', stored)).toBe(false);
    expect(await checkPassword('correct horse', 'pbkdf2$1$AAAA$AAAA')).toBe(false);
    expect(await checkPassword('correct horse', 'garbage')).toBe(false);
    const again = await hashPassword('correct horse');
    expect(again).not.toBe(stored); // salted
    expect(await hashVersion(again)).not.toBe(await hashVersion(stored));
  });

  it('come from the password header or HTTP Basic (any user name)', () => {
    expect(passwordOf(new Headers({ 'x-hangar-tunnel-password': 'p1' }))).toBe('p1');
    expect(passwordOf(new Headers({ authorization: `Basic ${btoa('anyone:p:2')}` }))).toBe('p:2');
    expect(passwordOf(new Headers({ authorization: 'Bearer hk_x' }))).toBeUndefined();
  });
});

describe('who may use a tunnel', () => {
  const rec = (over: Partial<TunnelAccessRecord> = {}): TunnelAccessRecord => ({ id: 't1', slug: 'app', auth_mode: 'public', enabled: true, password_version: null, ...over });
  const anyone: TunnelCaller = { tenant: null, foreign: false, cookie: null };
  const req = (who: TunnelCaller, wantsHtml = false) => ({ slug: 'app', method: 'GET', path: '/x', base: '/t/app', wantsHtml, who });
  const checks = (ok = false) => ({ keyLive: async () => true, passwordOk: async () => ok });
  const code = (p: Promise<unknown>) => p.then(() => 'allowed', (e: { code?: string; status?: number }) => `${e.status} ${e.code}`);

  it('public: anyone; disabled or another organization: 404', async () => {
    expect((await decideTunnelAccess(rec(), req(anyone), checks())).kind).toBe('allow');
    expect(await code(decideTunnelAccess(rec({ enabled: false }), req(anyone), checks()))).toBe('404 NOT_FOUND');
    expect(await code(decideTunnelAccess(rec(), req({ ...anyone, foreign: true }), checks()))).toBe('404 NOT_FOUND');
    expect(await code(decideTunnelAccess(null, req(anyone), checks()))).toBe('404 NOT_FOUND');
  });

  it('tenant_only: the organization’s key or a link’s cookie whose key is live; nobody else', async () => {
    const t = rec({ auth_mode: 'tenant_only' });
    expect(await code(decideTunnelAccess(t, req(anyone), checks()))).toBe('401 UNAUTHORIZED');
    expect(await code(decideTunnelAccess(t, req({ ...anyone, cookie: { kind: 'password', version: 'v' } }), checks()))).toBe('401 UNAUTHORIZED');
    expect(await decideTunnelAccess(t, req({ ...anyone, tenant: { credential_id: 'k1' } }), checks())).toEqual({ kind: 'allow', credential_id: 'k1' });
    expect(await decideTunnelAccess(t, req({ ...anyone, cookie: { kind: 'tenant', credential_id: 'k2' } }), checks())).toEqual({ kind: 'allow', credential_id: 'k2' });
    const revoked = { keyLive: async () => false, passwordOk: async () => false };
    expect(await code(decideTunnelAccess(t, req({ ...anyone, cookie: { kind: 'tenant', credential_id: 'k2' } }), revoked))).toBe('401 UNAUTHORIZED');
  });

  it('password: a cookie of the current password, or the right password; a browser without either gets the login page', async () => {
    const t = rec({ auth_mode: 'password', password_version: 'v2' });
    expect(await code(decideTunnelAccess(t, req(anyone), checks()))).toBe('401 UNAUTHORIZED');
    const page = await decideTunnelAccess(t, req(anyone, true), checks());
    expect(page.kind).toBe('respond');
    if (page.kind === 'respond') {
      expect(page.response.status).toBe(401);
      expect(await page.response.text()).toContain('action="/t/app/__hangar/login"');
    }
    expect((await decideTunnelAccess(t, req({ ...anyone, cookie: { kind: 'password', version: 'v2' } }), checks())).kind).toBe('allow');
    expect(await code(decideTunnelAccess(t, req({ ...anyone, cookie: { kind: 'password', version: 'v1' } }), checks()))).toBe('401 UNAUTHORIZED');
    expect((await decideTunnelAccess(t, req({ ...anyone, password: 'right' }), checks(true))).kind).toBe('allow');
    expect(await code(decideTunnelAccess(t, req({ ...anyone, password: 'wrong' }), checks(false)))).toBe('401 UNAUTHORIZED');
    expect((await decideTunnelAccess(t, req({ ...anyone, tenant: { credential_id: null } }), checks())).kind).toBe('allow');
  });
});

describe('the wrong-password limit', () => {
  it(`refuses a client after ${PER_CLIENT} failures and everyone after ${PER_TUNNEL}, until the window moves on`, () => {
    let now = 1_000_000;
    const limit = new FailureLimit(() => now);
    for (let i = 0; i < PER_CLIENT; i++) {
      expect(limit.retryAfter('a')).toBe(0);
      limit.failed('a');
    }
    expect(limit.retryAfter('a')).toBeGreaterThan(0);
    expect(limit.retryAfter('b')).toBe(0);
    now += WINDOW_MS;
    expect(limit.retryAfter('a')).toBe(0);
    for (let i = 0; i < PER_TUNNEL; i++) limit.failed(`c${i}`);
    expect(limit.retryAfter('fresh')).toBeGreaterThan(0);
  });
});
