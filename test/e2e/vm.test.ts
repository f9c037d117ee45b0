/**
 * A computer asked for as a microVM ({"isolation": "vm"}) through the real
 * API, agent and QEMU, driven through every route family a sandbox answers:
 * lifecycle, sync exec and Python, streamed exec over SSE, exec over a
 * WebSocket with stdin, terminals, env vars, metrics, raw TCP to a port
 * inside (the relay), clone, resize, and a stop that keeps the memory. (Move to another host is in
 * move.test.ts, which a VM run of the suite makes about VMs.)
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { hangar, newTenant, type Client } from './client.ts';
import { Streams, stdoutOf } from './exec-streams.ts';
import { hasDisk, hostLimits } from './isolation-under-test.ts';
import { ExecSocket, TerminalSocket, closedOf, createTerminal, dial, opened } from './sockets.ts';

const MiB = 1024 * 1024;
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

let api: Client;
let id: string;
const created: string[] = [];

beforeAll(async () => {
  api = await newTenant('vm');
  id = await api.runningComputer('vm-box', { isolation: 'vm' });
  created.push(id);
});

afterAll(async () => {
  for (const c of created) await api.del(`/computers/${c}`);
});

describe('a microVM computer through the API', () => {
  it('is a VM of its size on the host, with its own kernel; exec and exec/python answer as on a sandbox', async () => {
    expect((await api.get(`/computers/${id}`)).body).toMatchObject({ isolation: 'vm', status: 'running', vcpus: 1, memory_mb: 4096 });
    expect(hostLimits(hangar().dataDir, id, 'vm')).toEqual({ memoryBytes: 4096 * MiB, vcpus: 1 });
    const r = await api.exec(id, 'uname -r; whoami; pwd; sudo -n whoami');
    expect(r.status).toBe(200);
    expect(r.body.output).toMatch(/^\S+-cloud-amd64\nuser\n\/workspace\nroot\n$/);
    const py = await api.post(`/computers/${id}/exec/python`, { code: 'print(6 * 7)' });
    expect(py.body).toMatchObject({ output: '42\n', exit_code: 0 });
    const timeout = await api.exec(id, 'echo before; sleep 30; echo after', 1);
    expect(timeout.body).toMatchObject({ exit_code: 124, output: 'before\n', timed_out: true });
  });

  it('streams a command over SSE and runs one over a WebSocket with stdin', async () => {
    const streams = new Streams(api, id);
    const t = await streams.start('for i in 1 2 3; do echo sse-$i; sleep 0.2; done');
    expect(stdoutOf(await streams.all(t))).toBe('sse-1\nsse-2\nsse-3\n');

    const sock = await ExecSocket.open(api, id, { command: 'sha256sum | cut -c1-64' });
    const data = Buffer.alloc(512 * 1024, 'vm');
    sock.write(data);
    sock.closeStdin();
    await sock.stdout.waitFor(/^[0-9a-f]{64}\n$/, 0, 60_000);
    expect(sock.stdout.text.trim()).toBe(sha(data));
    await sock.closed;
    expect(sock.exitCode).toBe(0);
  });

  it('a terminal is a real PTY in the VM', async () => {
    const session = await createTerminal(api, id, { cols: 90, rows: 20 });
    const term = await TerminalSocket.open(session.ws_url);
    term.type('echo term-$((6*7)); stty size; uname -r\n');
    await term.out.waitFor(/term-42\r\n20 90\r\n\S+-cloud-amd64\r\n/, 0, 60_000);
    term.type('exit 3\n');
    expect(await term.closed).toEqual({ code: 4000, reason: 'shell exited with code 3' });
  });

  it('env vars reach new processes, and metrics come in', async () => {
    expect((await api.post(`/computers/${id}/env`, { name: 'VM_E2E', value: 'in the vm' })).status).toBe(201);
    expect((await api.exec(id, 'printenv VM_E2E')).body.output).toBe('in the vm\n');
    type Metrics = { cpu_percent: { value: number }[]; memory_percent: { value: number }[] };
    await expect
      .poll(async () => (await api.get<Metrics>(`/computers/${id}/metrics?window=1h`)).body.memory_percent.at(-1)?.value ?? 0, { timeout: 30_000 })
      .toBeGreaterThan(0);
  });

  it('raw TCP reaches a server inside the VM through the relay', async () => {
    const ready = await api.exec(
      id,
      `nohup python3 -c 'import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 7300)); s.listen(4)
open("/tmp/up", "w").write("up")
while True:
    c, _ = s.accept(); d = c.recv(100); c.sendall(d.upper()); c.close()' >/dev/null 2>&1 &
for i in $(seq 100); do [ -e /tmp/up ] && break; sleep 0.1; done; cat /tmp/up`,
    );
    expect(ready.body.output).toBe('up');
    const ws = dial(`${api.apiUrl.replace(/^http/, 'ws')}/computers/${id}/tcp/7300`, [], { authorization: `Bearer ${api.key}` });
    const got: Buffer[] = [];
    ws.on('message', (d: Buffer) => got.push(d));
    const closed = closedOf(ws);
    await opened(ws);
    ws.send(Buffer.from('hello vm'));
    expect((await closed).code).toBe(1000);
    expect(Buffer.concat(got).toString()).toBe('HELLO VM');
    expect(ws.readyState).toBe(WebSocket.CLOSED);
  });

  it('a running VM clones into a VM with its files; stop, resize and start give it new hardware and keep its disk', async () => {
    await api.exec(id, 'echo carried > /workspace/marker && sync');
    const c = await api.post<{ id: string; isolation: string }>(`/computers/${id}/clone`, { name: 'vm-clone' });
    expect(c.status).toBe(201);
    expect(c.body.isolation).toBe('vm');
    created.push(c.body.id);
    await api.waitFor(c.body.id, 'running');
    expect((await api.exec(c.body.id, 'cat /workspace/marker; uname -r')).body.output).toMatch(/^carried\n\S+-cloud-amd64\n$/);
    expect((await api.del(`/computers/${c.body.id}`)).status).toBe(200);
    expect(hasDisk(hangar().dataDir, c.body.id, 'vm')).toBe(false);

    expect((await api.post(`/computers/${id}/stop`)).body.status).toBe('stopped');
    expect(hostLimits(hangar().dataDir, id, 'vm')).toBeNull();
    expect((await api.post(`/computers/${id}/resize`, { size: 'medium' })).body).toMatchObject({ vcpus: 2, memory_mb: 8192 });
    expect((await api.post(`/computers/${id}/start`)).body.status).toBe('running');
    expect(hostLimits(hangar().dataDir, id, 'vm')).toEqual({ memoryBytes: 8192 * MiB, vcpus: 2 });
    expect((await api.exec(id, 'nproc; cat /workspace/marker')).body.output).toBe('2\ncarried\n');
    expect((await api.post(`/computers/${id}/restart`)).body.status).toBe('running');
    expect((await api.exec(id, 'cat /workspace/marker')).body.output).toBe('carried\n');
  });

  it('stopped with keep_memory, it resumes at the next start with its processes', async () => {
    await api.exec(id, "nohup bash -c 'while :; do sleep 1; done' >/dev/null 2>&1 & echo $! > /tmp/holder.pid");
    const holder = (await api.exec(id, 'cat /tmp/holder.pid')).body.output;
    const stop = await api.post(`/computers/${id}/stop`, { keep_memory: true });
    expect(stop.body).toMatchObject({ status: 'stopped', memory_kept: true });
    expect(hostLimits(hangar().dataDir, id, 'vm')).toBeNull();
    const start = await api.post(`/computers/${id}/start`);
    expect(start.body).toMatchObject({ status: 'running', memory_kept: false });
    expect((await api.exec(id, 'cat /tmp/holder.pid; kill -0 $(cat /tmp/holder.pid) && echo alive')).body.output).toBe(`${holder}alive\n`);
  });
});
