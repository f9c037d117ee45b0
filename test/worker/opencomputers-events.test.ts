import { describe, expect, it } from 'vitest';
import { createTenant, expectJson, tenantFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { SseReader } from '../e2e/sse.ts';

useAgentPeers();

describe('host events', () => {
  it('status changes, jobs starting and ending and secrets changing arrive as numbered events in the page shape; Last-Event-ID resumes exactly', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const api = (path: string, init: Parameters<typeof tenantFetch>[2] = {}) => tenantFetch(t.apiKey, `${OC}/hosts/${h.id}${path}`, init);
    const viewer = new SseReader(await api('/events'));
    const peer = await HostModePeer.online(h.key);
    const posted = api('/exec', { method: 'POST', body: { command: 'true' } });
    const p = (await peer.take('proc.start')).params.proc_id;
    peer.exit(p, 0);
    const job = await expectJson<{ id: string }>(await posted, 200);
    await expectJson(await api('/secrets', { method: 'POST', body: { name: 'K', value: 'value-1' } }), 201);
    peer.close();

    const seen = [];
    for (let i = 0; i < 5; i++) seen.push((await viewer.next())!);
    await viewer.close();
    expect(seen.map((m) => [m.id, m.event])).toEqual([
      ['1', 'status_change'],
      ['2', 'job_started'],
      ['3', 'job_ended'],
      ['4', 'secret_changed'],
      ['5', 'status_change'],
    ]);
    const data = seen.map((m) => JSON.parse(m.data) as { type: string; host_id: string; data: Record<string, unknown>; timestamp: string });
    for (const [i, d] of data.entries()) expect(d).toMatchObject({ type: seen[i].event, host_id: h.id, timestamp: expect.stringMatching(/Z$/) });
    expect(data[0].data).toMatchObject({ status: 'online' });
    expect(data[1].data).toMatchObject({ job_id: job.id, command: 'true' });
    expect(data[2].data).toMatchObject({ job_id: job.id, status: 'completed', exit_code: 0 });
    expect(data[3].data).toMatchObject({ name: 'K', action: 'created', scope: 'host' });
    expect(JSON.stringify(data[3])).not.toContain('value-1');
    expect(data[4].data).toMatchObject({ status: 'offline' });

    // Resume after event 3: exactly 4 and 5, then the revocation live.
    const resumed = new SseReader(await api('/events', { headers: { 'last-event-id': '3' } }));
    expect([(await resumed.next())!.id, (await resumed.next())!.id]).toEqual(['4', '5']);
    expect((await api('', { method: 'DELETE' })).status).toBe(204);
    const revoked = (await resumed.next())!;
    expect(revoked).toMatchObject({ id: '6', event: 'status_change' });
    expect(JSON.parse(revoked.data)).toMatchObject({ data: { status: 'revoked' } });
    await resumed.close();
    await sleep(10);
  });

  it("an idle stream, one host's or all hosts', gets a heartbeat comment about every 15 s and carries on after it", async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const one = new SseReader(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/events`));
    const all = new SseReader(await tenantFetch(t.apiKey, `${OC}/hosts/events`));
    // Nothing happens on the host: the first thing either stream carries is a heartbeat.
    const [a, b] = await Promise.all([one.nextItem(), all.nextItem()]);
    expect([a, b]).toEqual([{ comment: 'heartbeat' }, { comment: 'heartbeat' }]);
    const peer = await HostModePeer.online(h.key);
    for (const stream of [one, all]) {
      const next = (await stream.next())!;
      expect(next.event).toBe('status_change');
      expect(JSON.parse(next.data)).toMatchObject({ host_id: h.id, data: { status: 'online' } });
      await stream.close();
    }
    peer.close();
    await sleep(10);
  }, 60_000);

  it("all the tenant's hosts in one stream: ids name each host's place, Last-Event-ID resumes every host exactly, new hosts join, other tenants' never show", async () => {
    const t = await createTenant();
    const stranger = await createTenant();
    const a = await registerTenantHost(t.apiKey, { name: 'a' });
    const b = await registerTenantHost(t.apiKey, { name: 'b' });
    const theirs = await registerTenantHost(stranger.apiKey, { name: 'theirs' });
    const all = (headers: Record<string, string> = {}) => tenantFetch(t.apiKey, `${OC}/hosts/events`, { headers });
    const res = await all();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const viewer = new SseReader(res);

    const peerA = await HostModePeer.online(a.key);
    const peerB = await HostModePeer.online(b.key);
    await HostModePeer.online(theirs.key);
    peerA.close();
    const first = [];
    for (let i = 0; i < 3; i++) first.push((await viewer.next())!);
    const hostOf = (m: { data: string }) => (JSON.parse(m.data) as { host_id: string }).host_id;
    const statusOf = (m: { data: string }) => (JSON.parse(m.data) as { data: { status: string } }).data.status;
    // Each host's events in its order; nothing of the other tenant's host.
    expect(first.map((m) => [hostOf(m), statusOf(m)]).filter(([h]) => h === a.id)).toEqual([[a.id, 'online'], [a.id, 'offline']]);
    expect(first.map((m) => [hostOf(m), statusOf(m)]).filter(([h]) => h === b.id)).toEqual([[b.id, 'online']]);
    for (const m of first) expect(m.event).toBe('status_change');
    // The id after a's offline event names a's place 2 and, if b's came first, b's place 1.
    const last = first.at(-1)!.id!;
    expect(last).toContain(`${a.id.replaceAll('-', '')}.`);

    // Resuming after the first event gets exactly the other two, then live ones; a host registered now joins.
    const resumed = new SseReader(await all({ 'last-event-id': first[0].id! }));
    const again = [(await resumed.next())!, (await resumed.next())!];
    // Different hosts' events may interleave otherwise than live (each host's log is read on its own); each
    // host's come in order, and the place after both names the same event of every host.
    const perHost = (ms: { data: string }[]) => Object.fromEntries([a.id, b.id].map((h) => [h, ms.filter((m) => hostOf(m) === h).map(statusOf)]));
    expect(perHost(again)).toEqual(perHost(first.slice(1)));
    const place = (id: string | null) => id!.split('~').sort();
    expect(place(again[1].id)).toEqual(place(first[2].id));
    const c = await registerTenantHost(t.apiKey, { name: 'c' });
    await HostModePeer.online(c.key);
    peerB.close();
    const live = [(await resumed.next())!, (await resumed.next())!];
    expect(live.map((m) => [hostOf(m), statusOf(m)]).sort()).toEqual([[b.id, 'offline'], [c.id, 'online']].sort());
    await resumed.close();
    await viewer.close();

    // A Last-Event-ID that names no host's place (a per-host stream's number, garbage) reads every host from its oldest kept event.
    const fromStart = new SseReader(await all({ 'last-event-id': '3' }));
    const replay = [];
    for (let i = 0; i < 5; i++) replay.push((await fromStart.next())!);
    expect(replay.filter((m) => hostOf(m) === a.id).map(statusOf)).toEqual(['online', 'offline']);
    expect(replay.filter((m) => hostOf(m) === b.id).map(statusOf)).toEqual(['online', 'offline']);
    expect(replay.filter((m) => hostOf(m) === c.id).map(statusOf)).toEqual(['online']);
    await fromStart.close();
    await sleep(10);
  });
});
