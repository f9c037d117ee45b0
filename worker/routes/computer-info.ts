/** Reading and tuning a computer: auto-stop, connection URLs and tokens, installed apps, metrics (desktop credentials: desktop-viewer.ts). */
import { z } from 'zod';
import { unwrap } from '../../schema/errors.ts';
import { AutoStop, TEMPLATES } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { isoNow } from '../http/ids.ts';
import { validate } from '../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, loadComputer } from '../computers/access.ts';
import { desktopPageUrl } from '../desktop/desktop-urls.ts';
import { grantOf, mintStreamToken } from '../computers/stream-token.ts';
import { TEMPLATE_APPS } from '../computers/template-apps.ts';

const autoStopView = (seconds: number) => ({ auto_stop_seconds: seconds, enabled: seconds > 0 });

const wsOrigin = (c: RouteContext) => c.url.origin.replace(/^http/, 'ws');

export const COMPUTER_INFO_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/auto-stop',
    auth: 'tenant',
    handler: async (c) => json(autoStopView((await loadComputer(c.env, c.principal, c.params.id)).auto_stop)),
  }),
  route({
    method: 'PATCH',
    path: '/api/v1/computers/:id/auto-stop',
    auth: 'tenant',
    body: AutoStop,
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const seconds = c.body.auto_stop_seconds ?? 0;
      unwrap(await computerStub(c.env, row.id).setAutoStop(callerOf(c.principal), seconds));
      await c.env.DB.prepare('UPDATE computers SET auto_stop = ?, updated_at = ? WHERE id = ?').bind(seconds, isoNow(), row.id).run();
      return json(autoStopView(seconds));
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/stream-token',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      return json(await mintStreamToken(c.env, grantOf(c.principal), row.id));
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/urls',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      // Short-lived: the URLs carry a stream token; the terminal URL opens the computer's default session.
      const { token, expires_at } = await mintStreamToken(c.env, grantOf(c.principal), row.id);
      return json({
        desktop_url: desktopPageUrl(row, c.env, token),
        stream_url: desktopPageUrl(row, c.env, token),
        terminal_url: `${wsOrigin(c)}/api/v1/computers/${row.id}/terminal/default/ws?auth=${encodeURIComponent(token)}`,
        expires_at,
        computer_id: row.id,
      });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/apps',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const base = TEMPLATE_APPS[row.template_type as (typeof TEMPLATES)[number]] ?? [];
      const apps = [
        ...base.map((name) => ({ name, source: 'template' as const })),
        ...row.selected_apps.map((name) => ({ name, source: 'selected_apps' as const })),
      ];
      return json({ apps, data: apps });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/metrics',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const { window } = validate(z.object({ window: z.enum(['1h', '24h', '7d']).default('1h') }), { window: c.query.get('window') ?? undefined }, 'query');
      return json(unwrap(await computerStub(c.env, row.id).readMetrics(callerOf(c.principal), window)));
    },
  }),
];
