/**
 * Escape attempts as a tenant's root would make them inside a computer:
 * small Python programs (the template's python3, ctypes for raw system
 * calls) run with sudo through the public exec API. Each prints one JSON line
 * with what happened, so a test asserts on facts, not on error texts.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { newTenant, type Client } from './client.ts';

/** Runs `code` as root inside computer `id` and returns the JSON it printed last. */
export async function asRoot<T = Record<string, unknown>>(api: Client, id: string, code: string, timeout = 60): Promise<T> {
  const r = await api.exec(id, `sudo -n python3 - <<'PY'\n${PRELUDE}\n${code}\nPY`, timeout);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const lines = r.body.output.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch {
    throw new Error(`the probe printed no JSON (exit ${r.body.exit_code}):\n${r.body.output}`);
  }
}

/** Helpers every probe has: raw system calls that report errno instead of raising. */
const PRELUDE = `
import ctypes, errno, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_call(nr, *args):
    """0 or more on success, -errno on failure."""
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args])
    return r if r >= 0 else -ctypes.get_errno()
def sh(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return {"code": p.returncode, "err": (p.stdout + p.stderr).strip()[-300:]}
def done(**facts):
    print(json.dumps(facts))
`;

/** x86_64 system call numbers the probes use. */
export const NR = {
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  unshare: 272,
  open_tree: 428,
  fsopen: 430,
  inotify_init1: 294,
  mount: 165,
} as const;

export const EPERM = -1;

/** Two tenants with a running computer each, made before the file's tests and deleted after. */
export interface TwoComputers {
  a: Client;
  b: Client;
  ida: string;
  idb: string;
}

export function twoComputers(nameA: string, nameB: string): TwoComputers {
  const t = {} as TwoComputers;
  beforeAll(async () => {
    [t.a, t.b] = await Promise.all([newTenant(nameA), newTenant(nameB)]);
    [t.ida, t.idb] = await Promise.all([t.a.runningComputer(nameA), t.b.runningComputer(nameB)]);
  });
  afterAll(async () => {
    await Promise.all([t.ida && t.a.del(`/computers/${t.ida}`), t.idb && t.b.del(`/computers/${t.idb}`)]);
  });
  return t;
}

/** Waits until the computer answers an exec again (a fork bomb may hold it for a while). */
export async function alive(api: Client, id: string, within = 30_000): Promise<void> {
  const deadline = Date.now() + within;
  let last: unknown;
  while (Date.now() < deadline) {
    const r = await api.exec(id, 'echo alive; whoami');
    if (r.status === 200 && r.body.output === 'alive\nuser\n') return;
    last = r.body;
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`computer ${id} did not answer: ${JSON.stringify(last)}`);
}
