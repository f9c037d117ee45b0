/**
 * Figures of the files API, each beside a baseline measured in the same run:
 *  - upload and download MiB/s of one large file through the API (over the
 *    relay into the computer and back, sha256 checked), beside a local copy
 *    of the same file on this host; the agent's and workerd's peak memory;
 *  - snapshots: the time to snapshot a running computer with 1 GB written,
 *    and to restore it (new computer, and in place) until it runs again;
 *  - event latency: from a file written inside the computer to the event at
 *    a client of the events socket, beside inotify on this host.
 *
 * BENCH_MIB sets the file size (default 256), BENCH_SNAP_MIB what is written
 * before the snapshot (default 1024); BENCH_ONLY=transfer,snapshot,events runs a part. The dev server's state lives on tmpfs unless BENCH_STATE=disk
 * (see bench/streams/stack.ts).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { dial, opened } from '../test/e2e/sockets.ts';
import { STATE_ON, startStack, type Stack } from './streams/stack.ts';
import { RssSampler, mib, ms, pct, row } from './streams/measure.ts';

const SIZE = Number(process.env.BENCH_MIB ?? 256) * 1048576;
const ONLY = new Set((process.env.BENCH_ONLY ?? 'transfer,snapshot,events').split(','));
const SNAP_MIB = Number(process.env.BENCH_SNAP_MIB ?? 1024);
const mibps = (bytes: number, seconds: number) => `${(bytes / 1048576 / seconds).toFixed(1)} MiB/s`;

/** A file of random bytes on this host, and its sha256. */
function makeFile(dir: string): { file: string; sha256: string } {
  const file = path.join(dir, 'bench.bin');
  const fd = fs.openSync(file, 'w');
  const hash = createHash('sha256');
  const block = randomBytes(4 * 1048576);
  for (let at = 0; at < SIZE; at += block.length) {
    const piece = block.subarray(0, Math.min(block.length, SIZE - at));
    piece[0] = (at / block.length) & 0xff;
    fs.writeSync(fd, piece);
    hash.update(piece);
  }
  fs.closeSync(fd);
  return { file, sha256: hash.digest('hex') };
}

function http(stack: Stack, method: string, p: string, headers: Record<string, string | number>): Promise<{ req: ReturnType<typeof request>; res: Promise<IncomingMessage> }> {
  const url = new URL(stack.apiUrl + p);
  let resolve!: (r: IncomingMessage) => void;
  let reject!: (e: Error) => void;
  const res = new Promise<IncomingMessage>((a, b) => ((resolve = a), (reject = b)));
  const req = request(url, { method, headers: { authorization: `Bearer ${stack.key}`, ...headers } }, resolve);
  req.on('error', reject);
  return Promise.resolve({ req, res });
}

async function transfer(stack: Stack): Promise<void> {
  console.log(`\nUpload and download of a ${mib(SIZE)} file through the API (workerd's state on ${STATE_ON})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-files-'));
  try {
    const { file, sha256 } = makeFile(dir);
    // The baseline: the same bytes copied on this host, read and written through streams.
    let t0 = performance.now();
    await pipeline(fs.createReadStream(file), fs.createWriteStream(path.join(dir, 'copy.bin')));
    const local = (performance.now() - t0) / 1000;
    fs.rmSync(path.join(dir, 'copy.bin'));

    const mem = new RssSampler({ agent: stack.agentPid, ...stack.workerd });
    t0 = performance.now();
    const up = await http(stack, 'POST', `/computers/${stack.computerId}/files/upload?path=/workspace/bench.bin`, { 'content-type': 'application/octet-stream', 'content-length': SIZE });
    await pipeline(fs.createReadStream(file), up.req);
    const upRes = await up.res;
    let body = '';
    for await (const c of upRes) body += c;
    const upS = (performance.now() - t0) / 1000;
    if (upRes.statusCode !== 200) throw new Error(`upload: ${upRes.statusCode} ${body}`);
    const inside = (await stack.sh("sha256sum /workspace/bench.bin | cut -d' ' -f1")).trim();

    t0 = performance.now();
    const down = await http(stack, 'GET', `/computers/${stack.computerId}/files/download?path=/workspace/bench.bin`, {});
    down.req.end();
    const downRes = await down.res;
    const hash = createHash('sha256');
    let got = 0;
    for await (const c of downRes as AsyncIterable<Buffer>) {
      hash.update(c);
      got += c.length;
    }
    const downS = (performance.now() - t0) / 1000;
    const peaks = mem.stop();
    const ok = inside === sha256 && hash.digest('hex') === sha256 && got === SIZE;
    row('upload (POST …/files/upload, raw body)', mibps(SIZE, upS), `local copy ${mibps(SIZE, local)}`);
    row('download (GET …/files/download)', mibps(SIZE, downS), `local copy ${mibps(SIZE, local)}`);
    row('sha256 of both ways', ok ? 'equal' : 'DIFFERENT', '');
    for (const p of peaks) row(`peak memory: ${p.name}`, `+${mib(p.peak - p.before)} (of ${mib(p.peak)})`, `file ${mib(SIZE)}`);
    await stack.sh('rm -f /workspace/bench.bin');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Computer {
  id: string;
  status: string;
}

async function until(stack: Stack, id: string, status: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await stack.call<Computer>('GET', `/computers/${id}`);
    if (c.body.status === status) return;
    if (c.body.status === 'error' || Date.now() > deadline) throw new Error(`computer ${id} is ${c.body.status}, waiting for ${status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Times a snapshot of the running computer with SNAP_MIB written, and both restores, beside a plain copy and a plain create. */
async function snapshots(stack: Stack): Promise<void> {
  console.log(`\nSnapshots of a running computer with ${SNAP_MIB} MiB written (and restores until it runs)`);
  const id = stack.computerId;
  await stack.sh(`head -c ${SNAP_MIB}M /dev/urandom > /workspace/big && sync`, 600);
  const sum = async (cid: string) => (await stack.call<{ output: string }>('POST', `/computers/${cid}/exec`, { command: "sha256sum /workspace/big | cut -d' ' -f1", timeout: 120 })).body.output.trim();
  const before = await sum(id);

  // Baseline: the same number of bytes copied as a plain file copy on this host.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-snap-'));
  const file = path.join(dir, 'a');
  const fd = fs.openSync(file, 'w');
  const block = randomBytes(4 * 1048576);
  for (let i = 0; i < SNAP_MIB / 4; i++) fs.writeSync(fd, block);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  let t0 = performance.now();
  await new Promise<void>((resolve, reject) => spawn('cp', [file, `${file}.copy`]).on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cp: ${code}`)))));
  const copyMs = performance.now() - t0;
  fs.rmSync(dir, { recursive: true, force: true });

  t0 = performance.now();
  const made = await stack.call<{ data: { id: string; status: string; rootfs_size_bytes: number } }>('POST', `/computers/${id}/snapshots`, { comment: 'bench' });
  if (made.status !== 201) throw new Error(`snapshot: ${made.status} ${JSON.stringify(made.body)}`);
  let snap = made.body.data;
  while (snap.status === 'pending') snap = (await stack.call<{ data: typeof snap }>('GET', `/computers/${id}/snapshots/${snap.id}`)).body.data;
  const snapMs = performance.now() - t0;
  if (snap.status !== 'ready') throw new Error(`snapshot ${snap.status}`);
  row('snapshot of the running computer (POST -> ready)', ms(snapMs), `cp of ${SNAP_MIB} MiB on this host ${ms(copyMs)}`);

  // Change the disk, then restore into a new computer and time it until it runs.
  await stack.sh('head -c 1M /dev/urandom > /workspace/big');
  t0 = performance.now();
  const created = await stack.call<{ id: string }>('POST', '/computers', { name: 'bench-fresh', template_type: 'miosa-desktop', size: 'medium' });
  await until(stack, created.body.id, 'running');
  const freshMs = performance.now() - t0;
  await stack.call('DELETE', `/computers/${created.body.id}`);
  t0 = performance.now();
  const restored = await stack.call<{ data: Computer }>('POST', `/computers/${id}/restore/${snap.id}`, {});
  if (restored.status !== 201) throw new Error(`restore: ${restored.status} ${JSON.stringify(restored.body)}`);
  await until(stack, restored.body.data.id, 'running');
  const newMs = performance.now() - t0;
  const newSum = await sum(restored.body.data.id);
  await stack.call('DELETE', `/computers/${restored.body.data.id}`);
  row('restore into a new computer (POST -> running)', ms(newMs), `create -> running ${ms(freshMs)}`);

  // In place: stopped, restored, started.
  if ((await stack.call('POST', `/computers/${id}/stop`)).status !== 200) throw new Error('stop failed');
  t0 = performance.now();
  const inPlace = await stack.call('POST', `/computers/${id}/snapshots/${snap.id}/restore`);
  if (inPlace.status !== 200) throw new Error(`restore in place: ${inPlace.status} ${JSON.stringify(inPlace.body)}`);
  const restoreMs = performance.now() - t0;
  const started = performance.now();
  if ((await stack.call('POST', `/computers/${id}/start`)).status !== 200) throw new Error('start failed');
  await until(stack, id, 'running');
  const startMs = performance.now() - started;
  const inPlaceSum = await sum(id);
  row('restore in place (stopped), then start -> running', `${ms(restoreMs)} + ${ms(startMs)}`, `start alone ${ms(startMs)}`);
  row('content after each restore', newSum === before && inPlaceSum === before ? 'as at the snapshot' : 'DIFFERENT', '');
  row('snapshot size on the host', mib(snap.rootfs_size_bytes), `written ${SNAP_MIB} MiB`);
  await stack.call('DELETE', `/computers/${id}/snapshots/${snap.id}`);
  await stack.sh('rm -f /workspace/big');
}

/** The host's own inotify: a child writes files stamped with the time, fs.watch sees them. */
async function localEventLatency(n: number): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-watch-'));
  const lat: number[] = [];
  const watcher = fs.watch(dir, (_ev, name) => {
    const at = Number(String(name).split('-')[1]);
    if (at && lat.length < n) lat.push(Date.now() - at);
  });
  const child = spawn('python3', ['-c', `import time\nfor i in range(${n}):\n    open('${dir}/f-%d' % int(time.time() * 1000), 'w').close(); time.sleep(0.1)`]);
  await new Promise((r) => child.on('exit', r));
  await new Promise((r) => setTimeout(r, 200));
  watcher.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return lat;
}

async function events(stack: Stack): Promise<void> {
  const n = 60;
  console.log(`\nEvent latency: a file written inside the computer -> file.created at an events socket client (${n} files)`);
  await stack.sh('mkdir -p /workspace/lat');
  const lat: number[] = [];
  const url = `${stack.apiUrl.replace(/^http/, 'ws')}/computers/${stack.computerId}/events?subscribe=file&paths=/workspace/lat`;
  const ws = dial(url, ['miosa-events-v1'], { authorization: `Bearer ${stack.key}` });
  ws.on('message', (d: Buffer) => {
    const e = JSON.parse(d.toString()) as { type: string; data: { path?: string } };
    const at = Number(e.data.path?.split('-')[1]);
    if (e.type === 'file.created' && at) lat.push(Date.now() - at);
  });
  await opened(ws);
  // The computer shares this host's clock: each file is named with the time it is written.
  await stack.sh(`python3 -c "import time\nfor i in range(${n}):\n    open('/workspace/lat/f-%d' % int(time.time() * 1000), 'w').close(); time.sleep(0.1)"`, 60);
  await new Promise((r) => setTimeout(r, 500));
  ws.close();
  const local = await localEventLatency(n);
  row('file.created latency p50 / p95', `${ms(pct(lat, 50))} / ${ms(pct(lat, 95))} (${lat.length} of ${n})`, `host inotify (fs.watch) ${ms(pct(local, 50))} / ${ms(pct(local, 95))}`);
}

const stack = await startStack({ vars: { MAX_UPLOAD_BYTES: String(4 * 1024 * 1048576), COMPUTER_DISK_GB: '4' } });
try {
  if (ONLY.has('transfer')) await transfer(stack);
  if (ONLY.has('snapshot')) await snapshots(stack);
  if (ONLY.has('events')) await events(stack);
} finally {
  await stack.stop();
}
