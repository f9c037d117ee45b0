/**
 * Getting at a computer's desktop from outside: credentials for the viewer
 * page and VNC socket (vnc-credentials), the viewer password for native VNC
 * clients, and what a web app needs to embed the desktop. The page and the
 * socket themselves are served on the computer's own host
 * (worker/desktop/desktop-host.ts).
 */
import { unwrap } from '../../schema/errors.ts';
import { json } from '../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, loadComputer } from '../computers/access.ts';
import { grantOf, mintStreamToken } from '../computers/stream-token.ts';
import { desktopPageUrl, vncSocketUrl } from '../desktop/desktop-urls.ts';

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

async function passwordAnswer(c: RouteContext, rotate: boolean): Promise<Response> {
  const row = await loadComputer(c.env, c.principal, c.params.id);
  const { password, created_at } = unwrap(await computerStub(c.env, row.id).viewerPassword(callerOf(c.principal), rotate));
  return json({
    password,
    created_at,
    // The socket that asks for it (VNC authentication), for a native client through a WebSocket bridge (docs/desktop.md).
    ws_url: vncSocketUrl(row, c.env),
    desktop_url: desktopPageUrl(row, c.env),
    computer_id: row.id,
  });
}

export const DESKTOP_VIEWER_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/vnc-credentials',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const { token, expires_at } = await mintStreamToken(c.env, grantOf(c.principal), row.id);
      return json({
        desktop_url: desktopPageUrl(row, c.env, token),
        ws_url: vncSocketUrl(row, c.env, token),
        token,
        expires_at,
        computer_id: row.id,
        slug: row.slug,
      });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/viewer-password',
    auth: 'tenant',
    handler: (c) => passwordAnswer(c, false),
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/viewer-password/rotate',
    auth: 'tenant',
    handler: (c) => passwordAnswer(c, true),
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/embed',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const { token, expires_at } = await mintStreamToken(c.env, grantOf(c.principal), row.id);
      const url = desktopPageUrl(row, c.env, token);
      return json({
        url,
        embed_url: url,
        token,
        expires_at,
        computer_id: row.id,
        // The page syncs the clipboard when the frame may use it.
        iframe: `<iframe src="${escapeAttr(url)}" allow="clipboard-read; clipboard-write" style="border:0;width:100%;height:100%" title="${escapeAttr(row.name)} desktop"></iframe>`,
      });
    },
  }),
];
