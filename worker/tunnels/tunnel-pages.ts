/**
 * The login page of a password tunnel: a form that posts the password to
 * `{base}/__hangar/login` with the page the browser was on, which sets the
 * tunnel cookie and sends it back there. No script; the password field is
 * the only input besides the way back.
 */
import { TUNNEL_LOGIN_PATH } from './tunnel-credentials.ts';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function loginPage(slug: string, base: string, next: string, error: string | null): Response {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(slug)}: password</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:24rem;margin:16vh auto;padding:0 1rem;color:#222}h1{font-size:1.3rem}input{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;margin:.3rem 0 .8rem}button{font:inherit;padding:.5rem 1rem}p.error{color:#b00}</style>
</head><body><h1>${escapeHtml(slug)}</h1><p>This tunnel needs a password.</p>${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(base + TUNNEL_LOGIN_PATH)}"><input type="hidden" name="next" value="${escapeHtml(next)}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Open</button></form></body></html>
`;
  return new Response(body, {
    status: 401,
    headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-frame-options': 'DENY', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'" },
  });
}
