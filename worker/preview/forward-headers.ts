/**
 * The request head an app behind a preview host gets: the client's headers
 * without hop-by-hop ones and without any Hangar credential (an Authorization
 * holding a Hangar key or token, Hangar's cookies, the port token header),
 * plus X-Forwarded-For, -Proto and -Host. The Host header is the preview
 * host, as the client sent it.
 */
import { jwtVerify } from 'jose';
import type { Env } from '../env.ts';
import { API_KEY_RE, looksLikeJwt } from '../tenancy/keys.ts';
import { TOKEN_HEADER, withoutOurCookies } from './preview-credentials.ts';

/** Never forwarded: they describe one hop, not the request (RFC 9110 §7.6.1), or are Hangar's own. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'expect', 'host', 'content-length']);

/** True when an Authorization value carries a credential of this Hangar (an API key, or a JWT it signed). */
export async function isHangarCredential(env: Env, authorization: string | null): Promise<boolean> {
  const m = authorization && /^Bearer\s+(\S+)\s*$/i.exec(authorization.trim());
  if (!m) return false;
  if (API_KEY_RE.test(m[1])) return true;
  if (!looksLikeJwt(m[1])) return false;
  try {
    await jwtVerify(m[1], new TextEncoder().encode(env.JWT_SECRET), { algorithms: ['HS256'] });
    return true;
  } catch {
    return false;
  }
}

export interface ForwardOptions {
  /** The client's address (CF-Connecting-IP, or the dev server's peer). */
  clientIp: string;
  /** Drop Authorization: it is a Hangar credential. */
  dropAuthorization: boolean;
  /** Keep the WebSocket handshake headers (the agent's WebSocket client chooses from them). */
  websocket: boolean;
}

/** The headers for the app, in the client's order. */
export function forwardHeaders(request: Request, url: URL, o: ForwardOptions): Headers {
  const listed = new Set((request.headers.get('connection') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
  const out = new Headers();
  for (const [name, value] of request.headers) {
    const n = name.toLowerCase();
    if (n.startsWith('x-hangar-') || n === TOKEN_HEADER) continue;
    // A WebSocket upgrade keeps Upgrade (the object needs it to answer with a socket) and the handshake headers.
    const handshake = o.websocket && (n === 'upgrade' || n.startsWith('sec-websocket-'));
    if (HOP_BY_HOP.has(n) && !handshake) continue;
    if (listed.has(n) && !handshake) continue;
    if (n === 'authorization' && o.dropAuthorization) continue;
    if (n === 'cookie') {
      const kept = withoutOurCookies(value);
      if (kept) out.append('cookie', kept);
      continue;
    }
    out.append(name, value);
  }
  const host = request.headers.get('host') ?? url.host;
  out.set('host', host);
  const prior = request.headers.get('x-forwarded-for');
  out.set('x-forwarded-for', prior ? `${prior}, ${o.clientIp}` : o.clientIp);
  out.set('x-forwarded-proto', forwardedProto(request, url));
  out.set('x-forwarded-host', host);
  const length = request.headers.get('content-length');
  if (length !== null) out.set('content-length', length);
  return out;
}

/** The scheme the client used: Cloudflare's CF-Visitor when present, else the URL's. */
function forwardedProto(request: Request, url: URL): string {
  const visitor = request.headers.get('cf-visitor');
  if (visitor) {
    try {
      const scheme = (JSON.parse(visitor) as { scheme?: unknown }).scheme;
      if (scheme === 'https' || scheme === 'http') return scheme;
    } catch {
      /* not JSON: fall back to the URL */
    }
  }
  return url.protocol.replace(':', '');
}
