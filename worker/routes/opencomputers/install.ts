/**
 * Getting the agent onto a tenant's machine with one command and nothing
 * but Node ≥ 20 there: the API serves the install script and the agent as
 * one file (a self-hosted deployment has no package registry of its own).
 *
 *   curl -fsSL https://API/opencomputers/install.sh | sh -s -- --key hk_…
 *
 * The script checks Node, downloads /opencomputers/agent.mjs with curl, wget
 * or Node itself, checks its sha256 against the one it was served with, and
 * starts it (the key passed in the environment, not on the command line).
 */
import { AGENT_BUNDLE, AGENT_BUNDLE_SHA256, AGENT_BUNDLE_VERSION } from '../../generated/agent-bundle.js';
import { route, type RouteDef } from '../../router.ts';

export const INSTALL_PATH = '/opencomputers/install.sh';
export const AGENT_PATH = '/opencomputers/agent.mjs';

const shQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The install script for this API: its origin and the agent's digest are written in. */
export function installScript(origin: string): string {
  return `#!/bin/sh
# Installs and starts hangar-agent ${AGENT_BUNDLE_VERSION} for an OpenComputers host of ${origin}.
#
#   curl -fsSL ${origin}${INSTALL_PATH} | sh -s -- --key hk_...
#
# Options: --key KEY (or env HANGAR_HOST_KEY), --dir DIR (default ~/.hangar-agent),
#          --fs-root DIR (serve files only under DIR), --no-start (install, print the command).
set -eu
API=${shQuote(origin)}
SHA256=${shQuote(AGENT_BUNDLE_SHA256)}
DIR="\${HANGAR_AGENT_DIR:-\${HOME}/.hangar-agent}"
KEY="\${HANGAR_HOST_KEY:-}"
FS_ROOT=""
START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --key) KEY="\${2:?--key needs a value}"; shift 2 ;;
    --dir) DIR="\${2:?--dir needs a value}"; shift 2 ;;
    --fs-root) FS_ROOT="\${2:?--fs-root needs a value}"; shift 2 ;;
    --no-start) START=0; shift ;;
    *) echo "install.sh: unknown option $1 (use --key, --dir, --fs-root, --no-start)" >&2; exit 2 ;;
  esac
done
case "$KEY" in hk_*) ;; *) echo "install.sh: give the host key from POST /api/v1/opencomputers/hosts: --key hk_..." >&2; exit 2 ;; esac
command -v node >/dev/null 2>&1 || { echo "install.sh: hangar-agent needs Node.js 20 or newer; install it from https://nodejs.org and run this again" >&2; exit 1; }
MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$MAJOR" -ge 20 ] || { echo "install.sh: Node.js $(node -v) is too old; hangar-agent needs 20 or newer" >&2; exit 1; }
mkdir -p "$DIR"
TMP="$DIR/hangar-agent.mjs.download"
echo "downloading hangar-agent from $API ..." >&2
if command -v curl >/dev/null 2>&1; then curl -fsSL "$API${AGENT_PATH}" -o "$TMP"
elif command -v wget >/dev/null 2>&1; then wget -q "$API${AGENT_PATH}" -O "$TMP"
else node -e 'fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error("HTTP " + r.status); require("fs").writeFileSync(process.argv[2], Buffer.from(await r.arrayBuffer())); }).catch((e) => { console.error(e.message); process.exit(1); })' "$API${AGENT_PATH}" "$TMP"
fi
GOT=$(node -e 'process.stdout.write(require("crypto").createHash("sha256").update(require("fs").readFileSync(process.argv[1])).digest("hex"))' "$TMP")
[ "$GOT" = "$SHA256" ] || { rm -f "$TMP"; echo "install.sh: the download's sha256 is $GOT, expected $SHA256; try again" >&2; exit 1; }
mv "$TMP" "$DIR/hangar-agent.mjs"
echo "installed $DIR/hangar-agent.mjs" >&2
if [ "$START" = 0 ]; then
  echo "start it with: HANGAR_HOST_KEY=hk_... node $DIR/hangar-agent.mjs --api $API\${FS_ROOT:+ --fs-root $FS_ROOT}" >&2
  exit 0
fi
export HANGAR_HOST_KEY="$KEY"
if [ -n "$FS_ROOT" ]; then exec node "$DIR/hangar-agent.mjs" --api "$API" --fs-root "$FS_ROOT"; fi
exec node "$DIR/hangar-agent.mjs" --api "$API"
`;
}

export const INSTALL_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: INSTALL_PATH,
    auth: 'public',
    handler: async (c) =>
      new Response(installScript(c.url.origin), { headers: { 'content-type': 'text/x-shellscript; charset=utf-8', 'cache-control': 'no-cache' } }),
  }),
  route({
    method: 'GET',
    path: AGENT_PATH,
    auth: 'public',
    handler: async () =>
      new Response(AGENT_BUNDLE, {
        headers: {
          'content-type': 'text/javascript; charset=utf-8',
          'cache-control': 'no-cache',
          etag: `"${AGENT_BUNDLE_SHA256}"`,
          'x-hangar-agent-version': AGENT_BUNDLE_VERSION,
          'x-hangar-agent-sha256': AGENT_BUNDLE_SHA256,
        },
      }),
  }),
];
