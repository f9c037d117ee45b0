/**
 * Reaching a computer's VNC server from outside, as VNC clients do: with the
 * tokens the API mints (vnc-credentials, stream-token, the page's viewer
 * session), and with the viewer password (VNC authentication, checked by the
 * computer's object) from a native client through the TCP bridge. Tokens are
 * bound to their computer and organization: an expired one, another
 * computer's or another tenant's is a 401 before any byte of the desktop.
 */
import http from 'node:http';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVncBridge } from '../../scripts/vnc-bridge.ts';
import { hangar, newTenant, type Client } from './client.ts';
import { decodePng, pixel } from './png.ts';
import { RfbClient, RfbError } from './rfb-client.ts';
import { until } from '../until.ts';

let api: Client;
let other: Client;
let id: string;
let otherId: string;

/** Node cannot resolve *.localhost: connect to loopback and name the computer's host in the Host header. */
function viaLoopback(wsUrl: string): { url: string; host: string } {
  const u = new URL(wsUrl);
  const host = u.host;
  u.hostname = '127.0.0.1';
  return { url: u.toString(), host };
}

async function rfb(wsUrl: string): Promise<RfbClient> {
  const { url, host } = viaLoopback(wsUrl);
  return RfbClient.overWebSocket(url, { host });
}

/** The HTTP status a WebSocket upgrade gets (101 when it opens). */
async function upgradeStatus(wsUrl: string): Promise<number> {
  try {
    const c = await rfb(wsUrl);
    c.close();
    return 101;
  } catch (e) {
    const m = /refused: (\d+)/.exec(String(e));
    if (m) return Number(m[1]);
    throw e;
  }
}

/** POST /desktop/session on a computer's host (node:http: fetch will not send another Host). */
function postSession(pageUrl: string, body: unknown): Promise<{ status: number; body: { ws_url: string; expires_at: number } }> {
  const page = new URL(pageUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: page.port, path: '/desktop/session', method: 'POST', headers: { host: page.host, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const vncCredentials = async (c: Client, computer: string) =>
  (await c.get<{ ws_url: string; desktop_url: string; token: string; expires_at: number; computer_id: string }>(`/computers/${computer}/vnc-credentials`)).body;

beforeAll(async () => {
  api = await newTenant('desktop-viewer');
  other = await newTenant('desktop-viewer-other');
  [id, otherId] = await Promise.all([api.runningComputer('desktop-viewer'), other.runningComputer('other-desktop')]);
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
  if (otherId) await other.del(`/computers/${otherId}`);
});

describe('VNC with tokens', () => {
  it('vnc-credentials\' ws_url is a VNC session of the desktop: its pixels are the screen\'s', async () => {
    const creds = await vncCredentials(api, id);
    expect(creds.computer_id).toBe(id);
    expect(creds.ws_url).toMatch(new RegExp(`^ws://[a-z0-9-]+\\.computers\\.localhost:\\d+/ws/vnc/${id}\\?auth=`));
    expect(creds.desktop_url).toMatch(/\/desktop\/index\.html#auth=/);
    expect(creds.expires_at).toBeGreaterThan(Date.now() / 1000);
    const c = await rfb(creds.ws_url);
    const init = await c.handshake();
    expect(init).toMatchObject({ width: 1280, height: 720 });
    // The panel along the top: the VNC picture and an API screenshot agree there (once the fresh desktop has drawn it).
    const agree = async () => {
      const vnc = await c.rect(0, 0, 200, 20);
      const r = await fetch(`${api.apiUrl}/computers/${id}/desktop/screenshot`, { headers: { authorization: `Bearer ${api.key}` } });
      const shot = decodePng(new Uint8Array(await r.arrayBuffer()));
      let same = 0;
      for (let y = 0; y < 20; y++) for (let x = 0; x < 200; x++) if (pixel(shot, x, y).every((v, i) => v === vnc[(y * 200 + x) * 3 + i])) same++;
      const colours = new Set(Array.from({ length: 4000 }, (_, i) => vnc.subarray(i * 3, i * 3 + 3).join(','))).size;
      return same / 4000 > 0.9 && colours > 2;
    };
    const deadline = Date.now() + 30_000;
    while (!(await agree())) {
      if (Date.now() > deadline) throw new Error('the VNC picture never matched the API screenshot');
      await new Promise((r) => setTimeout(r, 500));
    }
    c.close();
  });

  it('a token from stream-token opens the same socket; the page\'s viewer session does too', async () => {
    const creds = await vncCredentials(api, id);
    const st = await api.post<{ token: string; expires_at: number }>(`/computers/${id}/stream-token`);
    const url = creds.ws_url.replace(/\?auth=.*/, `?auth=${encodeURIComponent(st.body.token)}`);
    const c = await rfb(url);
    expect((await c.handshake()).width).toBe(1280);
    c.close();

    const s = await postSession(creds.desktop_url, { computer_id: id, token: st.body.token });
    expect(s.status).toBe(200);
    const session = s.body;
    expect(session.expires_at - Date.now() / 1000).toBeGreaterThan(3600);
    const v = await rfb(session.ws_url);
    expect((await v.handshake()).height).toBe(720);
    v.close();
    // A session does not lengthen itself: only a link's stream token starts one.
    const viewerToken = decodeURIComponent(new URL(session.ws_url).searchParams.get('auth')!);
    expect((await postSession(creds.desktop_url, { computer_id: id, token: viewerToken })).status).toBe(401);
  });

  it('an expired token, another computer\'s token, another tenant\'s token and garbage are all 401', async () => {
    const mine = await vncCredentials(api, id);
    const theirs = await vncCredentials(other, otherId);
    const base = mine.ws_url.replace(/\?auth=.*/, '');
    const key = new TextEncoder().encode(hangar().jwtSecret);
    const expired = await new SignJWT({ org_id: api.orgId })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('hangar')
      .setAudience('hangar-stream')
      .setSubject(id)
      .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(key);
    expect(await upgradeStatus(`${base}?auth=${expired}`)).toBe(401);
    expect(await upgradeStatus(`${base}?auth=${encodeURIComponent(theirs.token)}`)).toBe(401);
    expect(await upgradeStatus(`${base}?auth=not-a-token`)).toBe(401);
    // The other tenant's own socket works with its own token: the 401s above are about whose token it is.
    const c = await rfb(theirs.ws_url);
    expect((await c.handshake()).width).toBe(1280);
    c.close();
    // A page on our computer's host cannot trade their token for a session either.
    expect((await postSession(mine.desktop_url, { computer_id: id, token: theirs.token })).status).toBe(401);
    expect((await postSession(mine.desktop_url, { computer_id: otherId, token: theirs.token })).status).toBe(401);
  });
});

describe('typing from a viewer', () => {
  it('a VNC viewer types characters its layout lacks even right after the API typed many such characters', async () => {
    expect((await api.post(`/computers/${id}/desktop/launch`, { app: 'terminal', wait_for_window: true })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    // The API binds spare keycodes for these; the VNC server needs free ones of its own for what viewers type.
    const greek = 'αβγδεζηθικλμνξοπρστυφχψω';
    expect((await api.post(`/computers/${id}/desktop/type`, { text: `echo ${greek} > /tmp/api-typed.txt\n` })).status).toBe(200);
    expect(await until('the API-typed file', async () => (await api.exec(id, 'cat /tmp/api-typed.txt 2>/dev/null')).body.output)).toBe(`${greek}\n`);
    const viewer = await rfb((await vncCredentials(api, id)).ws_url);
    await viewer.handshake();
    viewer.typeText('echo жёлтый > /tmp/viewer-typed.txt\n');
    expect(await until('the viewer-typed file', async () => (await api.exec(id, 'cat /tmp/viewer-typed.txt 2>/dev/null')).body.output)).toBe('жёлтый\n');
    viewer.close();
  });
});

describe('VNC with the viewer password (native clients)', () => {
  it('the password is stable until rotated; without it no one gets past the VNC login, with it a native client reaches the desktop through the bridge', async () => {
    const a = await api.get<{ password: string; ws_url: string; created_at: string }>(`/computers/${id}/viewer-password`);
    expect(a.status).toBe(200);
    expect(a.body.password).toMatch(/^[A-Za-z0-9]{8}$/);
    expect((await api.get<{ password: string }>(`/computers/${id}/viewer-password`)).body.password).toBe(a.body.password);
    expect(a.body.ws_url).not.toMatch(/auth=/);

    const wrong = await rfb(a.body.ws_url);
    await expect(wrong.handshake('nope1234')).rejects.toThrow(/wrong viewer password/);

    // A native client speaks TCP: through the bridge, it logs in with the password.
    const { url, host } = viaLoopback(a.body.ws_url);
    const bridge = await startVncBridge(url, { host });
    try {
      const native = await RfbClient.overTcp(bridge.port);
      expect(await native.handshake(a.body.password)).toMatchObject({ width: 1280, height: 720 });
      expect((await native.rect(0, 0, 4, 4)).length).toBe(48);
      native.close();
    } finally {
      await bridge.close();
    }
  });

  it('rotate: the old password stops working and sessions opened with it end; the new one works', async () => {
    const old = (await api.get<{ password: string; ws_url: string }>(`/computers/${id}/viewer-password`)).body;
    const session = await rfb(old.ws_url);
    await session.handshake(old.password);
    const rotated = await api.post<{ password: string }>(`/computers/${id}/viewer-password/rotate`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.password).not.toBe(old.password);
    await expect(Promise.race([session.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the old session stayed open')), 15_000))])).resolves.toBeDefined();
    const again = await rfb(old.ws_url);
    await expect(again.handshake(old.password)).rejects.toBeInstanceOf(RfbError);
    const fresh = await rfb(old.ws_url);
    expect((await fresh.handshake(rotated.body.password)).width).toBe(1280);
    fresh.close();
  });
});

describe('auto-stop and viewers', () => {
  it('a computer with auto-stop keeps running while a viewer watches its still desktop, and stops once the viewer leaves', async () => {
    const viewer = await rfb((await vncCredentials(api, id)).ws_url);
    await viewer.handshake();
    expect((await api.patch(`/computers/${id}/auto-stop`, { auto_stop_seconds: 2 })).status).toBe(200);
    // GET reads D1 only: polling it is not activity. Nothing moves on the screen: the viewer is all that keeps it.
    const status = async () => (await api.get<{ status: string }>(`/computers/${id}`)).body.status;
    await new Promise((r) => setTimeout(r, 6_000));
    expect(await status()).toBe('running');
    viewer.close();
    const deadline = Date.now() + 30_000;
    let s = 'running';
    while ((s === 'running' || s === 'stopping') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      s = await status();
    }
    expect(s).toBe('stopped');
  });
});
