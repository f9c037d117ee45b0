/**
 * The bench's apps (test/e2e/apps/preview_apps.py): once inside the bench's
 * computer, its ports exposed, and once on this host's loopback as the
 * baseline a relay adds to — the same code answering the same requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../scripts/local-stack.ts';
import type { Stack } from '../streams/stack.ts';

export const APPS_FILE = path.join(import.meta.dirname, '..', '..', 'test', 'e2e', 'apps', 'preview_apps.py');
/** Ports of the apps inside the computer: static, sink, events, socket. */
export const IN_COMPUTER = [8000, 8001, 8002, 8003] as const;

export interface Apps {
  /** Preview URLs of the four apps in the computer. */
  preview: string[];
  /** Loopback ports of the same four apps on this host. */
  local: number[];
  stop(): void;
}

export async function startApps(stack: Stack): Promise<Apps> {
  const code = readFileSync(APPS_FILE, 'utf8');
  await stack.sh(`cat > /tmp/apps.py <<'PYEOF'\n${code}\nPYEOF\nnohup python3 /tmp/apps.py >/tmp/apps.log 2>&1 &\nfor i in $(seq 100); do test -e /tmp/apps.ready && exit 0; sleep 0.1; done; cat /tmp/apps.log; exit 1`);
  const preview: string[] = [];
  for (const port of IN_COMPUTER) {
    const r = await stack.call<{ data: { url: string } }>('POST', `/computers/${stack.computerId}/ports`, { port, visibility: 'public' });
    if (r.status !== 201) throw new Error(`expose ${port}: ${r.status} ${JSON.stringify(r.body)}`);
    preview.push(r.body.data.url);
  }
  const local = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-apps-'));
  const child: ChildProcess = spawn('python3', [APPS_FILE], { env: { ...process.env, APPS_PORTS: local.join(','), APPS_DIR: dir }, stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (!existsSync(path.join(dir, 'apps.ready'))) {
    if (Date.now() > deadline) throw new Error('the baseline apps did not start on this host');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    preview,
    local,
    stop() {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
