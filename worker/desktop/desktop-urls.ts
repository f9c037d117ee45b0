/** The desktop's URLs on the computer's own host (worker/computers/urls.ts): the viewer page and its VNC socket. */
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';
import { computerOrigin, wsOf } from '../computers/urls.ts';

type Named = Pick<ComputerRow, 'slug' | 'id'>;

/** The viewer page; with a token (in the fragment, so it never reaches a server's log) it connects at once. */
export function desktopPageUrl(row: Named, env: Env, token?: string): string {
  return `${computerOrigin(row, env)}/desktop/index.html${token ? `#auth=${encodeURIComponent(token)}` : ''}`;
}

/** RFB over WebSocket to the desktop; without a token it asks for the viewer password. */
export function vncSocketUrl(row: Named, env: Env, token?: string): string {
  return `${wsOf(computerOrigin(row, env))}/ws/vnc/${row.id}${token ? `?auth=${encodeURIComponent(token)}` : ''}`;
}
