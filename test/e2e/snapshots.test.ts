/**
 * Snapshots of real computers: taken of a running computer (its file system
 * frozen for a copy-on-write copy), then the computer changes, and a restore
 * — into a new computer, and in place on the stopped computer — shows the
 * disk exactly as it was (sha256 of a binary file, a file made after is
 * gone). Progress comes as snapshot_progress events, and the computer's
 * event stream tells of its snapshots; deleting the computer deletes its
 * snapshots unless kept, on the host too, as does deleting a snapshot.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangar, newTenant, type Client } from './client.ts';
import { snapshotDir } from './isolation-under-test.ts';
import { readSse } from './sse.ts';

interface SnapshotView {
  id: string;
  computer_id: string;
  tenant_id: string;
  status: string;
  rootfs_size_bytes: number | null;
  keep: boolean;
  error: string | null;
}

let api: Client;
let id: string;
const made: string[] = [];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const original = randomBytes(3 * 1024 * 1024 + 17);
const snapshotFile = (name: string) => path.join(snapshotDir(hangar().dataDir), name);

async function writeFile(computer: string, p: string, bytes: Buffer): Promise<void> {
  const r = await api.post(`/computers/${computer}/files/write`, { path: p, content_base64: bytes.toString('base64') });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}
const shaInside = async (computer: string, p: string) => (await api.exec(computer, `sha256sum '${p}' | cut -d' ' -f1`)).body.output.trim();
const exists = async (computer: string, p: string) => (await api.exec(computer, `test -e '${p}' && echo yes || echo no`)).body.output.trim() === 'yes';

/** Waits until the snapshot's status is `status`. */
async function snapshotStatus(computer: string, sid: string, status: string): Promise<SnapshotView> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await api.get<{ data: SnapshotView }>(`/computers/${computer}/snapshots/${sid}`);
    if (r.body.data?.status === status) return r.body.data;
    if (Date.now() > deadline) throw new Error(`snapshot ${sid} not ${status}: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

beforeAll(async () => {
  api = await newTenant('snapshots');
  id = await api.runningComputer('snapshots');
  made.push(id);
});

afterAll(async () => {
  for (const c of made) await api.del(`/computers/${c}`);
});

describe('snapshots of a real computer', () => {
  let sid: string;
  let copy: string;

  it('a snapshot of a running computer is ready with its size, and the computer kept running', async () => {
    await writeFile(id, '/workspace/data.bin', original);
    await api.exec(id, 'echo before > /home/user/note.txt && sync');
    const r = await api.post<{ data: SnapshotView }>(`/computers/${id}/snapshots`, { comment: 'before the change' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    sid = r.body.data.id;
    expect(r.body.data).toMatchObject({ computer_id: id, tenant_id: api.orgId, comment: 'before the change' });
    const ready = await snapshotStatus(id, sid, 'ready');
    expect(ready.rootfs_size_bytes).toBeGreaterThan(original.length);
    expect((await api.get(`/computers/${id}`)).body.status).toBe('running');
    // On the host: the copy and what a computer made of it needs.
    expect(fs.existsSync(snapshotFile(`${sid}.img`))).toBe(true);
    expect(JSON.parse(fs.readFileSync(snapshotFile(`${sid}.json`), 'utf8'))).toMatchObject({ computer_id: id });
    const list = await api.get<{ data: SnapshotView[] }>(`/computers/${id}/snapshots`);
    expect(list.body.data.map((s) => s.id)).toEqual([sid]);

    // The computer changes after the snapshot.
    await writeFile(id, '/workspace/data.bin', randomBytes(1024));
    await api.exec(id, 'echo after > /home/user/note.txt && touch /workspace/made-after && sync');
    expect(await shaInside(id, '/workspace/data.bin')).not.toBe(sha(original));
  });

  it('restore into a new computer: it runs with the disk as it was, the source keeps its changes', async () => {
    const progress = fetch(`${api.apiUrl}/computers/${id}/snapshots/${sid}/events`, { headers: { authorization: `Bearer ${api.key}` } });
    const r = await api.post<{ data: { id: string; status: string }; snapshot: SnapshotView }>(`/computers/${id}/restore/${sid}`, { name: 'from-snapshot' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.snapshot.id).toBe(sid);
    copy = r.body.data.id;
    made.push(copy);
    await api.waitFor(copy, 'running');
    expect(await shaInside(copy, '/workspace/data.bin')).toBe(sha(original));
    expect((await api.exec(copy, 'cat /home/user/note.txt')).body.output).toBe('before\n');
    expect(await exists(copy, '/workspace/made-after')).toBe(false);
    expect((await api.exec(id, 'cat /home/user/note.txt')).body.output).toBe('after\n');

    // Progress from the snapshot's first event: taking it, then the restore into `copy`.
    const res = await progress;
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await readSse(res, 4);
    expect(events.every((e) => e.event === 'snapshot_progress')).toBe(true);
    const data = events.map((e) => JSON.parse(e.data) as { operation: string; step: string; fraction: number; target_computer_id?: string });
    expect(data.map((d) => [d.operation, d.step])).toEqual([
      ['create', 'copying'],
      ['create', 'done'],
      ['restore', 'copying'],
      ['restore', 'done'],
    ]);
    expect(data[3]).toMatchObject({ fraction: 1, target_computer_id: copy });
  });

  it('restore in place on the stopped computer: after a start it has the old content again', async () => {
    const running = await api.post(`/computers/${id}/snapshots/${sid}/restore`);
    expect(running.status).toBe(409);
    expect((await api.post(`/computers/${id}/stop`)).status).toBe(200);
    const r = await api.post<{ data: { status: string }; snapshot: SnapshotView }>(`/computers/${id}/snapshots/${sid}/restore`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.data.status).toBe('stopped');
    expect(r.body.snapshot).toMatchObject({ id: sid, status: 'ready' });
    expect((await api.post(`/computers/${id}/start`)).status).toBe(200);
    await api.waitFor(id, 'running');
    expect(await shaInside(id, '/workspace/data.bin')).toBe(sha(original));
    expect((await api.exec(id, 'cat /home/user/note.txt')).body.output).toBe('before\n');
    expect(await exists(id, '/workspace/made-after')).toBe(false);

    // Its progress: after the taking and the restore into a new computer, the restore in place into this one.
    const res = await fetch(`${api.apiUrl}/computers/${id}/snapshots/${sid}/events`, { headers: { authorization: `Bearer ${api.key}` } });
    const steps = (await readSse(res, 6)).map((e) => JSON.parse(e.data) as { operation: string; step: string; fraction: number; target_computer_id?: string });
    expect(steps.slice(4).map((d) => [d.operation, d.step, d.target_computer_id])).toEqual([
      ['restore', 'copying', id],
      ['restore', 'done', id],
    ]);
    expect(steps[5].fraction).toBe(1);
  });

  it("the computers' event streams tell of the snapshot: taken and ready, restored in place; the new computer's, restored into it", async () => {
    const eventsOf = async (computer: string, n: number) => {
      // The stream does not end by itself: a missing event fails the read at the deadline.
      const res = await fetch(`${api.apiUrl}/computers/${computer}/events?types=snapshot.created,snapshot.ready,snapshot.restored&last_event_id=0`, {
        headers: { authorization: `Bearer ${api.key}` },
        signal: AbortSignal.timeout(60_000),
      });
      expect(res.status).toBe(200);
      return (await readSse(res, n)).map((m) => ({ event: m.event, ...(JSON.parse(m.data) as { type: string; computer_id: string; data: Record<string, unknown> }) }));
    };
    const own = await eventsOf(id, 3);
    expect(own.map((e) => [e.event, e.type, e.computer_id, e.data.snapshot_id])).toEqual([
      ['snapshot.created', 'snapshot.created', id, sid],
      ['snapshot.ready', 'snapshot.ready', id, sid],
      ['snapshot.restored', 'snapshot.restored', id, sid],
    ]);
    expect(own[1].data.rootfs_size_bytes).toBeGreaterThan(original.length);
    expect(own[2].data.in_place).toBe(true);
    const theirs = await eventsOf(copy, 1);
    expect(theirs.map((e) => [e.type, e.computer_id, e.data.snapshot_id, e.data.in_place])).toEqual([['snapshot.restored', copy, sid, false]]);
  });

  it("deleting a computer deletes its snapshots, on the host too, except kept ones", async () => {
    const c = await api.runningComputer('short-lived');
    const gone = (await api.post<{ data: SnapshotView }>(`/computers/${c}/snapshots`, {})).body.data.id;
    const kept = (await api.post<{ data: SnapshotView }>(`/computers/${c}/snapshots`, { keep: true })).body.data.id;
    await snapshotStatus(c, gone, 'ready');
    await snapshotStatus(c, kept, 'ready');
    expect(fs.existsSync(snapshotFile(`${gone}.img`))).toBe(true);
    expect((await api.del(`/computers/${c}`)).status).toBe(200);
    const all = await api.get<{ data: SnapshotView[] }>('/snapshots');
    expect(all.body.data.map((s) => s.id)).toContain(kept);
    expect(all.body.data.map((s) => s.id)).not.toContain(gone);
    const deadline = Date.now() + 60_000;
    while (fs.existsSync(snapshotFile(`${gone}.img`)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    expect(fs.existsSync(snapshotFile(`${gone}.img`))).toBe(false);
    expect(fs.existsSync(snapshotFile(`${kept}.img`))).toBe(true);

    // A kept snapshot outlives its computer and can still become a new one.
    const r = await api.post<{ data: { id: string } }>(`/computers/${c}/restore/${kept}`, {});
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    made.push(r.body.data.id);
    await api.waitFor(r.body.data.id, 'running');
    expect((await api.del(`/computers/${c}/snapshots/${kept}`)).status).toBe(200);
    expect((await api.get(`/computers/${c}/snapshots/${kept}`)).status).toBe(404);
    // Deleted through the API, its copy leaves the host too.
    const until = Date.now() + 60_000;
    while (fs.existsSync(snapshotFile(`${kept}.img`)) && Date.now() < until) await new Promise((res) => setTimeout(res, 200));
    expect(fs.existsSync(snapshotFile(`${kept}.img`))).toBe(false);
  });
});
