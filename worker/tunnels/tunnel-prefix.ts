/**
 * An app behind `/t/{slug}` knows nothing of the prefix: it redirects to
 * `/login` and sets cookies for `Path=/`. Taken as they are, the browser
 * would leave the tunnel. So the answer's Location (and Content-Location)
 * and every Set-Cookie's Path are put back under the prefix; an app that
 * already honours X-Forwarded-Prefix (and so includes it) is left alone.
 * Relative references need nothing: they resolve under the prefix already.
 */

/** A reference (Location) under the prefix; `host` is the request's own host, whose absolute URLs are the app's too. */
export function prefixReference(value: string, prefix: string, host: string): string {
  const v = value.trim();
  if (v.startsWith('/') && !v.startsWith('//')) return underPrefix(v, prefix);
  let url: URL;
  try {
    // Absolute (http://host/…) or scheme-relative (//host/…): only our own host's belong to the tunnel.
    url = new URL(v, 'http://relative.invalid');
  } catch {
    return value;
  }
  if (url.host !== host.toLowerCase() || !/^https?:$/.test(url.protocol) || !/^(?:[a-z][a-z0-9+.-]*:)?\/\//i.test(v)) return value;
  url.pathname = underPrefix(url.pathname, prefix);
  return v.startsWith('//') ? url.href.slice(url.protocol.length) : url.href;
}

function underPrefix(path: string, prefix: string): string {
  if (path === prefix || path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}?`)) return path;
  return prefix + path;
}

/** A Set-Cookie whose Path is put under the prefix (no Path: the browser's default is under it already). */
export function prefixSetCookie(value: string, prefix: string): string {
  return value.replace(/(;\s*path\s*=\s*)([^;]*)/gi, (_m, lead: string, path: string) => {
    const p = path.trim();
    return `${lead}${p.startsWith('/') ? underPrefix(p, prefix) : `${prefix}/`}`;
  });
}

/** Rewrites a response head of the app in place for a tunnel reached under `prefix` on `host`. */
export function prefixHead(headers: Headers, prefix: string, host: string): void {
  for (const name of ['location', 'content-location']) {
    const v = headers.get(name);
    if (v !== null) headers.set(name, prefixReference(v, prefix, host));
  }
  const cookies = headers.getSetCookie();
  if (cookies.length) {
    headers.delete('set-cookie');
    for (const c of cookies) headers.append('set-cookie', prefixSetCookie(c, prefix));
  }
}
