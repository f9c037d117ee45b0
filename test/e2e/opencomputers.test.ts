/**
 * OpenComputers end to end: the real Worker and a second real agent, in host
 * mode, installed from the API with install.sh and run by Node ≥ 20 as an
 * unprivileged user of this machine: the machine itself is what jobs,
 * terminals and secrets reach, with that user's permissions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangar, newTenant, type Client } from './client.ts';
import { registerTenantHost, startHostAgent, type HostAgent } from './host-agent.ts';
import { freshHome, runInstaller } from '../../scripts/host-mode-agent.ts';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { SseReader, readSse } from './sse.ts';
import { TerminalSocket } from './sockets.ts';

type Job = { id: string; status: string; exit_code: number | null; stdout: string; stderr: string; reason: string | null; truncated: boolean };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let api: Client;
let agent: HostAgent;
let base: string;

/** Polls the job until `done` holds (generous: the machine is shared). */
async function jobUntil(id: string, done: (j: Job) => boolean, ms = 60_000): Promise<Job> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await api.get<Job>(`${base}/exec/${id}`);
    if (r.status === 200 && done(r.body)) return r.body;
    if (Date.now() > deadline) throw new Error(`job ${id}: condition not met within ${ms} ms; last ${JSON.stringify(r.body)}`);
    await sleep(100);
  }
}

const run = (body: Record<string, unknown>) => api.post<Job>(`${base}/exec`, body);

/** The host's status_change events seen while the suite's agent came online. */
let onlineEvents: { id: string | null; data: { type: string; host_id: string; data: { status: string } } }[] = [];

beforeAll(async () => {
  api = await newTenant('opencomputers');
  const host = await registerTenantHost(api, 'e2e-box');
  base = `/opencomputers/hosts/${host.id}`;
  const events = new SseReader(await fetch(`${api.apiUrl}${base}/events`, { headers: { authorization: `Bearer ${api.key}` } }));
  agent = await startHostAgent(api, { host });
  const first = (await events.next())!;
  onlineEvents = [{ id: first.id, data: JSON.parse(first.data) }];
  await events.close();
});

afterAll(async () => {
  await agent?.stop();
});

describe('a host-mode agent on this machine', () => {
  it('comes online: a status_change event says so on the host event stream', () => {
    expect(onlineEvents).toEqual([{ id: '1', data: { type: 'status_change', host_id: agent.hostId, data: { status: 'online', reason: null }, timestamp: expect.stringMatching(/Z$/) } }]);
  });

  it('is online with what it reported of the machine and of the user it runs as', async () => {
    const host = (await api.get<Record<string, unknown>>(base)).body;
    expect(host).toMatchObject({ status: 'online', os: 'linux', arch: process.arch, user: { name: agent.user.name, home: agent.home }, terminal: true });
    expect(host.cpus).toBeGreaterThan(0);
    expect(host.memory_mb).toBeGreaterThan(0);
    expect(host.agent_version).toMatch(/^\d+\.\d+\.\d+/);
    expect(host.node_version).toMatch(/^v\d+/);
  });

  it("jobs run as the agent's user in its home, with that user's permissions, and never see the host key", async () => {
    const r = await run({ command: 'id -u; pwd; echo "$HOME"; cat /etc/shadow; printenv HANGAR_HOST_KEY; echo done' });
    expect(r.status).toBe(200);
    expect(r.body.stdout).toBe(`${agent.user.uid}\n${agent.home}\n${agent.home}\ndone\n`);
    expect(r.body.stderr).toMatch(/Permission denied/);
    expect(JSON.stringify(r.body)).not.toContain(agent.hostKey);
  });

  it('args go to the program as they are (no shell expansion); env and cwd (relative to the home, or absolute) apply', async () => {
    const a = await run({ command: 'printf', args: ['[%s]', '$HOME', '*', 'a b', '`id`'] });
    expect(a.body).toMatchObject({ status: 'completed', exit_code: 0, stdout: '[$HOME][*][a b][`id`]' });
    await run({ command: 'mkdir -p work/sub' });
    const b = await run({ command: 'echo "$GREETING $WHO"; pwd', env: ['GREETING=hello', 'WHO=a=b c'], cwd: 'work/sub' });
    expect(b.body.stdout).toBe(`hello a=b c\n${agent.home}/work/sub\n`);
    const c = await run({ command: 'pwd', cwd: '/tmp' });
    expect(c.body.stdout).toBe('/tmp\n');
    const missing = await run({ command: 'pwd', cwd: 'no/such/dir' });
    expect(missing.body).toMatchObject({ status: 'failed', reason: 'start_failed' });
  });

  it('non-zero exits and timeouts are failed jobs; wait:false answers 202 and the job is fetched later', async () => {
    const failed = await run({ command: 'echo out; echo err >&2; exit 7' });
    expect(failed.body).toMatchObject({ status: 'failed', exit_code: 7, reason: 'exit_code', stdout: 'out\n', stderr: 'err\n' });
    const slow = await run({ command: 'sleep 30', timeout: 1 });
    expect(slow.body).toMatchObject({ status: 'failed', exit_code: 124, reason: 'timeout' });
    const later = await run({ command: 'sleep 0.5; echo finished', wait: false });
    expect(later.status).toBe(202);
    expect(later.body.status).toBe('running');
    expect(await jobUntil(later.body.id, (j) => j.status === 'completed')).toMatchObject({ stdout: 'finished\n', exit_code: 0 });
  });
});

describe('job streams', () => {
  it('a viewer joining late gets everything from the first byte; Last-Event-ID resumes exactly', async () => {
    const job = await run({ command: 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.2; done', wait: false });
    await sleep(500);
    const first = new SseReader(await fetchStream(job.body.id));
    const got: { id: string; type: string; data: unknown }[] = [];
    while (got.length < 3) {
      const m = (await first.next())!;
      got.push({ id: m.id!, type: m.event, data: (JSON.parse(m.data) as { data: unknown }).data });
    }
    await first.close();
    expect(got[0]).toMatchObject({ id: '1', type: 'started' });
    const rest = await readSse(await fetchStream(job.body.id, got.at(-1)!.id));
    const all = [...got, ...rest.map((m) => ({ id: m.id!, type: m.event, data: (JSON.parse(m.data) as { data: unknown }).data }))];
    expect(all.map((e) => Number(e.id))).toEqual(all.map((_, i) => i + 1));
    const text = all.filter((e) => e.type === 'stdout').map((e) => e.data).join('');
    expect(text).toBe('line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n');
    expect(all.slice(-2).map((e) => e.type)).toEqual(['exit', 'done']);
    // After the end, a new viewer still gets all of it.
    const late = await readSse(await fetchStream(job.body.id));
    expect(late.length).toBe(all.length);
  });

  it('a running job survives the agent dropping its connection, and its output is whole and in order', async () => {
    const job = await run({ command: 'for i in $(seq 1 40); do echo "n=$i"; sleep 0.05; done', wait: false });
    await sleep(600);
    agent.drop();
    await sleep(300);
    agent.drop();
    const done = await jobUntil(job.body.id, (j) => j.status !== 'running');
    expect(done.status).toBe('completed');
    expect(done.stdout).toBe(Array.from({ length: 40 }, (_, i) => `n=${i + 1}\n`).join(''));
    const events = await readSse(await fetchStream(job.body.id));
    expect(events.filter((e) => e.event === 'stdout').map((e) => (JSON.parse(e.data) as { data: string }).data).join('')).toBe(done.stdout);
  });
});

describe('cancelling a job', () => {
  it('ends the whole process group, a background child that ignores SIGTERM included: nothing of the job survives', async () => {
    const job = await run({ command: `(trap '' TERM; exec sleep 300) & echo "child=$!"; echo "leader=$$"; sleep 300`, wait: false });
    const pids = await jobUntil(job.body.id, (j) => /leader=\d+/.test(j.stdout));
    const child = Number(/child=(\d+)/.exec(pids.stdout)![1]);
    const leader = Number(/leader=(\d+)/.exec(pids.stdout)![1]);
    expect(alive(child)).toBe(true);
    const del = await api.del(`${base}/exec/${job.body.id}`);
    expect(del.status).toBe(204);
    expect(await jobUntil(job.body.id, (j) => j.status !== 'running')).toMatchObject({ status: 'cancelled', reason: 'cancelled' });
    const deadline = Date.now() + 20_000;
    while ((alive(child) || alive(leader)) && Date.now() < deadline) await sleep(100);
    expect({ child: alive(child), leader: alive(leader) }).toEqual({ child: false, leader: false });
  });
});

describe('terminals', () => {
  it("a ticket opens the user's login shell on a PTY; a new ticket re-attaches with the recent output replayed", async () => {
    const t = await api.post<{ ticket: string; ws_url: string; session_id: string; expires_at: string }>(`${base}/terminal/ticket`, { cols: 100, rows: 30 });
    expect(t.status).toBe(201);
    expect(new URL(t.body.ws_url).pathname).toBe('/opencomputers/ws/terminal');
    const first = await TerminalSocket.open(t.body.ws_url);
    first.type('echo marker-$((6*7)) $(id -u); stty size; tty\n');
    const [, uid] = await first.out.waitFor(/marker-42 (\d+)\r\n30 100\r\n\/dev\/pts\/\d+\r\n/);
    expect(Number(uid)).toBe(agent.user.uid);
    first.ws.send(JSON.stringify({ type: 'resize', cols: 120, rows: 40 }));
    await sleep(200);
    first.drop();

    // The ticket worked once.
    await expect(TerminalSocket.open(t.body.ws_url)).rejects.toThrow(/401/);
    const again = await api.post<{ ws_url: string }>(`${base}/terminal/ticket`, { session_id: t.body.session_id });
    expect(again.status).toBe(201);
    const second = await TerminalSocket.open(again.body.ws_url);
    await second.out.waitFor(/marker-42/);
    const from = second.out.text.length;
    second.type('stty size; exit 3\n');
    await second.out.waitFor(/40 120\r\n/, from);
    expect(await second.closed).toEqual({ code: 4000, reason: 'shell exited with code 3' });
  });
});

describe('secrets', () => {
  it("jobs get the tenant's and the host's secrets (the host's winning), masked as *** in the record and the stream", async () => {
    const tenantSecret = await api.post<{ id: string }>('/opencomputers/secrets', { name: 'OC_SHARED', value: 'shared-value-123' });
    expect(tenantSecret.status).toBe(201);
    expect((await api.post('/opencomputers/secrets', { name: 'OC_CLASH', value: 'from-the-tenant' })).status).toBe(201);
    expect((await api.post(`${base}/secrets`, { name: 'OC_CLASH', value: 'from-the-host-9' })).status).toBe(201);
    const job = await run({ command: 'echo "shared=$OC_SHARED clash=$OC_CLASH"; printf %s "$OC_SHARED" | tr -d -- -; echo' });
    expect(job.body.stdout).toBe('shared=*** clash=***\nsharedvalue123\n');
    const events = await readSse(await fetchStream(job.body.id));
    const streamed = events.filter((e) => e.event === 'stdout').map((e) => (JSON.parse(e.data) as { data: string }).data).join('');
    expect(streamed).toBe(job.body.stdout);
    // A new value reaches the agent at once.
    expect((await api.patch(`/opencomputers/secrets/${tenantSecret.body.id}`, { value: 'rotated-value-456' })).status).toBe(200);
    const after = await run({ command: 'printf %s "$OC_SHARED" | rev' });
    expect(after.body.stdout).toBe('654-eulav-detator');
    // The agent held them in memory only: nothing under its home (where it keeps its own files) has a value.
    expect(filesContaining(agent.home, ['shared-value-123', 'rotated-value-456', 'from-the-host-9', 'from-the-tenant'])).toEqual([]);
  });
});

describe('the one command on a machine with only Node', () => {
  it('curl … install.sh | sh -s -- --key hk_… downloads the agent, checks it, and brings the host online', async () => {
    const host = await registerTenantHost(api, 'one-command');
    const home = freshHome();
    const installer = runInstaller(hangar().origin, home, host.host_key);
    try {
      const deadline = Date.now() + 60_000;
      let status = '';
      while (status !== 'online' && Date.now() < deadline) {
        await sleep(100);
        status = (await api.get<{ status: string }>(`/opencomputers/hosts/${host.id}`)).body.status;
      }
      expect(status, installer.output()).toBe('online');
      expect(installer.output()).toMatch(/installed .*hangar-agent\.mjs/);
      const job = await api.post<{ stdout: string }>(`/opencomputers/hosts/${host.id}/exec`, { command: 'echo "$HOME"; printenv HANGAR_HOST_KEY || echo no-key' });
      expect(job.body.stdout).toBe(`${home}\nno-key\n`);
    } finally {
      await installer.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('npx hangar-agent --api … --key hk_… in a checkout of this project serves the machine too', async () => {
    const host = await registerTenantHost(api, 'from-a-checkout');
    const home = mkdtempSync(path.join(os.tmpdir(), 'hangar-oc-checkout-'));
    // Its own process group, so that stopping it ends npx and the agent under it.
    const child = spawn('npx', ['--no-install', 'hangar-agent', '--api', hangar().origin, '--key', host.host_key], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      env: { PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: home, LANG: 'C.UTF-8' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const deadline = Date.now() + 90_000;
      let status = '';
      while (status !== 'online' && child.exitCode === null && Date.now() < deadline) {
        await sleep(100);
        status = (await api.get<{ status: string }>(`/opencomputers/hosts/${host.id}`)).body.status;
      }
      expect(status, output).toBe('online');
      const job = await api.post<{ stdout: string }>(`/opencomputers/hosts/${host.id}/exec`, { command: 'echo "$HOME"; pwd' });
      expect(job.body.stdout).toBe(`${home}\n${home}\n`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(-child.pid!, 'SIGTERM');
        const killer = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            /* gone meanwhile */
          }
        }, 10_000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('hosts that go away', () => {
  it('an offline host answers 409, and revoking a host closes its agent for good', async () => {
    const other = await startHostAgent(api, { name: 'short-lived' });
    const hostPath = `/opencomputers/hosts/${other.hostId}`;
    await other.stop();
    const deadline = Date.now() + 30_000;
    while ((await api.get<{ status: string }>(hostPath)).body.status !== 'offline' && Date.now() < deadline) await sleep(100);
    const r = await api.post<{ error: { code: string } }>(`${hostPath}/exec`, { command: 'true' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('HOST_NOT_CONNECTED');

    const third = await startHostAgent(api, { name: 'revoked' });
    expect((await api.del(`/opencomputers/hosts/${third.hostId}`)).status).toBe(204);
    expect(await third.exited).toBe(78);
    expect(third.output()).toMatch(/revoked/);
    await third.stop();
  });
});

function fetchStream(jobId: string, lastEventId?: string): Promise<Response> {
  return fetch(`${api.apiUrl}${base}/exec/${jobId}/stream`, { headers: { authorization: `Bearer ${api.key}`, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) } });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('files', () => {
  const fsUrl = (p: string) => `${api.apiUrl}${base}/fs${p}`;
  const auth = () => ({ authorization: `Bearer ${api.key}` });

  it('a 50 MB binary file goes up (multipart) and comes back byte-exact, with Content-Length and ranges', async () => {
    const data = randomBytes(50 * 1024 * 1024);
    const form = new FormData();
    form.append('note', 'fields before the file are skipped');
    form.append('file', new Blob([data]), 'blob.bin');
    const up = await fetch(fsUrl('/upload?path=up/blob.bin'), { method: 'POST', headers: auth(), body: form });
    expect(up.status).toBe(201);
    expect(await up.json()).toMatchObject({ path: `${agent.home}/up/blob.bin`, size: data.length, is_dir: false });
    const owner = await run({ command: 'stat -c %U up/blob.bin; sha256sum up/blob.bin' });
    expect(owner.body.stdout).toBe(`${agent.user.name}\n${sha256(data)}  up/blob.bin\n`);
    const down = await fetch(fsUrl('/download?path=up/blob.bin'), { headers: auth() });
    expect(down.status).toBe(200);
    expect(down.headers.get('content-length')).toBe(String(data.length));
    expect(sha256(new Uint8Array(await down.arrayBuffer()))).toBe(sha256(data));
    const part = await fetch(fsUrl('/download?path=up/blob.bin'), { headers: { ...auth(), range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${data.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true);
  });

  it("the machine's permissions apply: what the agent's user may not touch is 403, what is not there 404", async () => {
    const shadow = await fetch(fsUrl('/download?path=/etc/shadow'), { headers: auth() });
    expect(shadow.status).toBe(403);
    expect(((await shadow.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
    expect((await api.get(`${base}/fs/list?path=/root`)).status).toBe(403);
    expect((await api.raw('POST', `${base}/fs/upload?path=/etc/hangar-was-here`, { body: 'x', headers: { 'content-type': 'text/plain' } })).status).toBe(403);
    expect((await api.get(`${base}/fs/stat?path=no/such/file`)).status).toBe(404);
    expect((await api.get(`${base}/fs/download?path=no/such/file`)).status).toBe(404);
  });

  it('mkdir makes parents; listing, stat, and delete (a non-empty directory needs recursive)', async () => {
    const made = await api.post<{ path: string; is_dir: boolean }>(`${base}/fs/mkdir`, { path: 'tree/a/b' });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ path: `${agent.home}/tree/a/b`, is_dir: true });
    expect((await api.raw('POST', `${base}/fs/upload?path=tree/a/note.txt`, { body: 'hello', headers: { 'content-type': 'text/plain' } })).status).toBe(201);
    const list = await api.get<{ path: string; entries: { name: string; is_dir: boolean; size: number }[] }>(`${base}/fs?path=tree/a`);
    expect(list.body.path).toBe(`${agent.home}/tree/a`);
    expect(list.body.entries.map((e) => [e.name, e.is_dir, e.size])).toEqual([['b', true, 0], ['note.txt', false, 5]]);
    expect((await api.get(`${base}/fs/stat?path=tree/a/note.txt`)).body).toMatchObject({ size: 5, is_symlink: false, mode: expect.any(Number) });
    const refused = await api.del(`${base}/fs/delete?path=tree`);
    expect(refused.status).toBe(409);
    expect((await api.del(`${base}/fs?path=tree&recursive=true`)).status).toBe(204);
    expect((await api.get(`${base}/fs/stat?path=tree`)).status).toBe(404);
  });

  it('an upload past the limit is a 413 and leaves nothing behind', async () => {
    const limit = 64 * 1024 * 1024;
    let sent = 0;
    const chunk = new Uint8Array(1024 * 1024);
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent > limit + 2 * chunk.length) return c.close();
        sent += chunk.length;
        c.enqueue(chunk);
      },
    });
    const r = await api.raw('POST', `${base}/fs/upload?path=too-big.bin`, { body, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(413);
    const left = await run({ command: 'ls -a | grep -c "too-big" || true' });
    expect(left.body.stdout).toBe('0\n');
  });

  it('an agent started with --fs-root serves files only under that tree, links that lead out included', async () => {
    // A root that does not exist fails the preflight: the agent stops and the host says why.
    const failed = await startHostAgent(api, { name: 'jailed', args: ['--fs-root', 'no-such-dir'] }).then(
      () => null,
      (e: Error & { hostId?: string }) => e,
    );
    expect(failed?.message).toMatch(/exited \(78\)/);
    const errored = await api.get<{ status: string; status_reason: string }>(`/opencomputers/hosts/${failed!.hostId}`);
    expect(errored.body).toMatchObject({ status: 'error', status_reason: expect.stringContaining('no-such-dir') });
    const other = await startHostAgent(api, { name: 'jailed-2', args: ['--fs-root', '.'] });
    try {
      const b = `/opencomputers/hosts/${other.hostId}`;
      expect((await api.get<{ fs_root: string }>(b)).body.fs_root).toBe(other.home);
      await api.post(`${b}/exec`, { command: 'mkdir -p inside && echo hi > inside/x && ln -s /etc inside/out' });
      expect((await api.get(`${b}/fs/stat?path=inside/x`)).status).toBe(200);
      expect((await api.get(`${b}/fs/list?path=/etc`)).status).toBe(403);
      expect((await api.get(`${b}/fs/list?path=inside/out`)).status).toBe(403);
      expect((await api.get(`${b}/fs/download?path=inside/out/hostname`)).status).toBe(403);
      expect((await api.get(`${b}/fs/stat?path=../`)).status).toBe(403);
      // Listing the tree shows the link as a link, nothing of what is outside.
      const listed = await api.get<{ entries: { name: string; is_dir: boolean; is_symlink: boolean; symlink_target: string }[] }>(`${b}/fs/list?path=inside`);
      expect(listed.body.entries.find((e) => e.name === 'out')).toMatchObject({ is_symlink: true, is_dir: false, symlink_target: '/etc' });
    } finally {
      await other.stop();
    }
  });
});

/** The files under `dir` (recursively, links not followed) whose bytes contain any of `needles`. */
function filesContaining(dir: string, needles: string[]): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const bytes = readFileSync(file);
    if (needles.some((n) => bytes.includes(n))) found.push(file);
  }
  return found;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
