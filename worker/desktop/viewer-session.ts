/**
 * Viewer sessions of the desktop page. A link carries a stream token (five
 * minutes: long enough to open it); the page exchanges it once for a viewer
 * token that lets it reconnect for VIEWER_SESSION_TTL_S, so a dropped
 * connection comes back without a new link. Bound to one computer and
 * organization like the stream token it came from, and to the same API key
 * (`key_id`), so revoking the key ends it.
 */
import type { Env } from '../env.ts';
import { mintComputerToken, verifyComputerToken } from '../computers/stream-token.ts';

export const VIEWER_SESSION_TTL_S = 12 * 3600;
const AUDIENCE = 'hangar-desktop-viewer';

export interface ViewerClaims {
  org_id: string;
  credential_id: string | null;
}

export const mintViewerToken = (env: Env, claims: ViewerClaims, computerId: string) => mintComputerToken(env, AUDIENCE, VIEWER_SESSION_TTL_S, claims, computerId);

/** The claims of a viewer token valid for this computer whose key is not revoked; null otherwise. */
export const verifyViewerToken = (env: Env, token: string, computerId: string): Promise<ViewerClaims | null> => verifyComputerToken(env, AUDIENCE, token, computerId);
