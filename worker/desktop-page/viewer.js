// The desktop viewer page's script (browser JavaScript, bundled with noVNC by
// scripts/build-desktop-page.ts). It runs on the computer's own host:
//  - a link with a short-lived token (`#auth=` or `?auth=`, from
//    vnc-credentials, urls, embed or stream-token) is exchanged once for a
//    viewer session (POST /desktop/session), so reconnecting works for as long
//    as the session, not just the token's five minutes;
//  - without a token it connects anyway and noVNC asks for the viewer password
//    (the object checks it: VNC authentication);
//  - the desktop scales to the window, the connection comes back after a drop,
//    and the clipboard goes both ways.
import RFB from '@novnc/novnc';

const $ = (id) => document.getElementById(id);
const screenEl = $('screen');
const statusEl = $('status');
const messageEl = $('message');
const passwordForm = $('password-form');
const clipboardEl = $('clipboard');

const computerId = document.querySelector('meta[name="hangar-computer"]').content;
const params = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
const viewOnly = params.get('view_only') === '1' || params.get('view_only') === 'true';
const storeKey = `hangar-viewer:${computerId}`;

// Session storage lets a reload reconnect without the link; a framed page may be denied it (third-party storage), and then simply does without.
const store = {
  get: () => {
    try {
      return JSON.parse(sessionStorage.getItem(storeKey) || 'null');
    } catch {
      return null;
    }
  },
  set: (v) => {
    try {
      sessionStorage.setItem(storeKey, JSON.stringify(v));
    } catch {
      /* not allowed here */
    }
  },
  clear: () => {
    try {
      store.clear();
    } catch {
      /* not allowed here */
    }
  },
};

/** The state the page shows, for people and for tests (`data-state` on <html>). */
function show(state, text) {
  document.documentElement.dataset.state = state;
  statusEl.textContent = text;
  statusEl.hidden = state === 'connected';
}

function wsBase() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/vnc/${computerId}`;
}

/** A viewer session from the link's token (kept for this tab, so a reload works without the token). */
async function session() {
  const token = params.get('auth') || params.get('token');
  if (token) {
    // The token leaves the address bar: it should not end up in screenshots or shared links.
    history.replaceState(null, '', location.pathname + (viewOnly ? '#view_only=1' : ''));
    const r = await fetch('/desktop/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ computer_id: computerId, token }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error?.message || `the link was refused (${r.status})`);
    }
    const s = await r.json();
    store.set(s);
    return s;
  }
  const kept = store.get();
  if (kept && kept.expires_at * 1000 > Date.now()) return kept;
  return null;
}

let rfb = null;
let sessionInfo = null;
let password = null;
let attempts = 0;
let everConnected = false;
let retryTimer = null;

function connect() {
  clearTimeout(retryTimer);
  if (sessionInfo && sessionInfo.expires_at * 1000 <= Date.now()) {
    store.clear();
    show('expired', 'This desktop link has expired. Open a fresh one from your app.');
    return;
  }
  const url = sessionInfo ? sessionInfo.ws_url : wsBase();
  show(everConnected ? 'reconnecting' : 'connecting', everConnected ? 'Connection lost; reconnecting…' : 'Connecting to the desktop…');
  rfb = new RFB(screenEl, url, { shared: true, credentials: password ? { password } : undefined });
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  rfb.viewOnly = viewOnly;
  rfb.background = '#1b2430';
  rfb.addEventListener('connect', () => {
    attempts = 0;
    everConnected = true;
    passwordForm.hidden = true;
    show('connected', '');
    rfb.focus();
  });
  rfb.addEventListener('credentialsrequired', () => {
    if (password) return rfb.sendCredentials({ password });
    show('password', 'This desktop asks for its viewer password.');
    passwordForm.hidden = false;
    $('password').focus();
  });
  rfb.addEventListener('securityfailure', (e) => {
    password = null;
    show('password', `The desktop refused the login: ${e.detail.reason || 'wrong password'}.`);
    passwordForm.hidden = false;
  });
  rfb.addEventListener('clipboard', (e) => {
    clipboardEl.value = e.detail.text;
    // Into the local clipboard too, where the browser allows it (a focused page in a secure context).
    navigator.clipboard?.writeText(e.detail.text).catch(() => {});
  });
  rfb.addEventListener('disconnect', () => {
    rfb = null;
    if (document.documentElement.dataset.state === 'password' || document.documentElement.dataset.state === 'expired') return;
    attempts++;
    const delay = Math.min(5000, 250 * 2 ** Math.min(attempts, 5));
    show(everConnected ? 'reconnecting' : 'connecting', `${everConnected ? 'Connection lost' : 'Could not connect'}; trying again in ${Math.ceil(delay / 1000)} s…`);
    retryTimer = setTimeout(connect, delay);
  });
}

passwordForm.addEventListener('submit', (e) => {
  e.preventDefault();
  password = $('password').value;
  passwordForm.hidden = true;
  if (rfb) rfb.sendCredentials({ password });
  else connect();
});

/** The local clipboard to the desktop: what is pasted on the page, typed in the panel, or in the clipboard when the page gets focus. */
function sendClipboard(text) {
  if (rfb && typeof text === 'string') rfb.clipboardPasteFrom(text);
}
clipboardEl.addEventListener('input', () => sendClipboard(clipboardEl.value));
document.addEventListener('paste', (e) => sendClipboard(e.clipboardData?.getData('text/plain')));
window.addEventListener('focus', () => {
  navigator.clipboard?.readText().then(sendClipboard, () => {});
});
$('clipboard-toggle').addEventListener('click', () => {
  $('clipboard-panel').hidden = !$('clipboard-panel').hidden;
});

// For embedding apps (and tests): the page's state, and the clipboard towards the desktop.
window.hangarDesktop = {
  state: () => document.documentElement.dataset.state,
  sendClipboard,
};

(async () => {
  try {
    sessionInfo = await session();
  } catch (e) {
    show('expired', `${e.message}. Open a fresh link from your app.`);
    return;
  }
  connect();
})();
