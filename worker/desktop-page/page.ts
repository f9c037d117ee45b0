/**
 * The desktop viewer page (desktop_url): a small HTML shell around the
 * bundled script (viewer.js with noVNC, built by scripts/build-desktop-page.ts
 * into viewer-bundle.js). Static apart from the computer id it connects to.
 */
import { VIEWER_JS, VIEWER_VERSION } from './viewer-bundle.js';

export const VIEWER_SCRIPT_PATH = `/desktop/viewer-${VIEWER_VERSION}.js`;

/** Browsers may frame the page anywhere (that is what `embed` is for); nothing else loads from elsewhere. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self' ws: wss:",
  'frame-ancestors *',
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The page of one computer's desktop; it shows nothing of the computer beyond its id (the host name has its slug). */
export function viewerPage(computerId: string): Response {
  const html = `<!doctype html>
<html lang="en" data-state="loading">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="hangar-computer" content="${escapeHtml(computerId)}">
<title>Desktop</title>
<style>
  html, body { margin: 0; height: 100%; background: #1b2430; color: #e8edf3; font: 14px system-ui, sans-serif; overflow: hidden; }
  #screen { position: absolute; inset: 0; }
  #status { position: absolute; left: 50%; top: 45%; transform: translate(-50%, -50%); padding: 12px 18px; background: rgba(0,0,0,.6); border-radius: 8px; max-width: 80%; text-align: center; }
  #password-form { position: absolute; left: 50%; top: 55%; transform: translate(-50%, -50%); display: flex; gap: 8px; }
  #password-form[hidden], #status[hidden], #clipboard-panel[hidden] { display: none; }
  input, button, textarea { font: inherit; border-radius: 6px; border: 1px solid #56606c; background: #0f151c; color: inherit; padding: 6px 10px; }
  #clipboard-toggle { position: absolute; right: 8px; bottom: 8px; opacity: .55; }
  #clipboard-toggle:hover { opacity: 1; }
  #clipboard-panel { position: absolute; right: 8px; bottom: 48px; width: min(360px, 80vw); }
  #clipboard { width: 100%; height: 120px; box-sizing: border-box; }
</style>
</head>
<body>
<div id="screen"></div>
<div id="status">Loading…</div>
<form id="password-form" hidden><input id="password" type="password" maxlength="8" autocomplete="current-password" placeholder="Viewer password"><button>Connect</button></form>
<button id="clipboard-toggle" title="Clipboard">Clipboard</button>
<div id="clipboard-panel" hidden><textarea id="clipboard" placeholder="The desktop's clipboard. Type or paste here to send text to it."></textarea></div>
<script type="module" src="${VIEWER_SCRIPT_PATH}"></script>
</body>
</html>
`;
  return new Response(html, {
    headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': CSP, 'referrer-policy': 'no-referrer' },
  });
}

export function viewerScript(): Response {
  return new Response(VIEWER_JS, {
    headers: { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=31536000, immutable' },
  });
}
