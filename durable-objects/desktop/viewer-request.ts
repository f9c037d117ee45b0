/**
 * How a route hands a desktop viewer's WebSocket to the ComputerObject: an
 * internal request to DESKTOP_VIEWER_PATH whose header says how the viewer
 * was let in. Routes build the request afresh, so a client cannot set it.
 *  - token: a stream or viewer token for this computer (its organization,
 *    and the API key behind it, if any, so revoking the key ends the viewer);
 *  - password: nobody vouched for the viewer; the object asks it for the
 *    viewer password (VNC authentication) before it reaches the desktop.
 */
import { z } from 'zod';
import { CallerSchema } from '../exec/client-sockets.ts';

export const DESKTOP_VIEWER_PATH = '/desktop/viewer';
export const DESKTOP_VIEWER_HEADER = 'x-hangar-desktop-viewer';

export const ViewerRequest = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('token'), caller: CallerSchema }),
  z.object({ mode: z.literal('password') }),
]);
export type ViewerRequest = z.infer<typeof ViewerRequest>;

export const encodeViewerRequest = (r: ViewerRequest): string => encodeURIComponent(JSON.stringify(r));

export function parseViewerRequest(header: string | null): ViewerRequest | null {
  if (!header) return null;
  try {
    const r = ViewerRequest.safeParse(JSON.parse(decodeURIComponent(header)));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
