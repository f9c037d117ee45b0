/** Ids and timestamps as the API shows them: UUID v4, ISO 8601 UTC without fractions. */
export const newId = (): string => crypto.randomUUID();

export const newRequestId = (): string => `req_${crypto.randomUUID().replaceAll('-', '')}`;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
/** A UUID as the API mints them (versions 1-8, RFC variant). */
export const isUuid = (s: string): boolean => UUID_RE.test(s);

/**
 * Text that could be an id: the UUID text form, any version or variant, any case
 * (nil and max included). Such an id that names nothing is a 404; only text of
 * another shape is a 400 INVALID_ID.
 */
export const looksLikeId = (s: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);

/** Now (or a given time) as `2026-05-17T10:00:00Z`. */
export const isoNow = (at: number = Date.now()): string => new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** URL-safe lower-case slug of a display name. */
export function slugify(name: string): string {
  const s = name
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48);
  return s || 'computer';
}

/** Random url-safe token with the given number of random bytes. */
export function randomToken(bytes = 32): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** sha256 of a string as lower-case hex. */
export async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s));
  return [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, '0')).join('');
}
