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
});
