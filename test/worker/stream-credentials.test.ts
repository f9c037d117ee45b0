/**
 * The credentials contract for the event and log streams: revoking an API key
 * ends the computer and organization event streams, the log stream and the
 * events socket opened with it (and nothing of another key), and they open
 * no more with it.
 */
import { SELF, env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, createApiKey, expectError, expectJson, operatorFetch } from './helpers.ts';
import { SseReader } from '../e2e/sse.ts';
import { useAgentPeers } from './agent-peer.ts';
import { runningComputer, world, type World } from './computer-fixtures.ts';
import { connect, upgrade } from './ws-client.ts';
import { CLOSE_CREDENTIAL_REVOKED } from '../../durable-objects/credentials/held-credentials.ts';

useAgentPeers();

const revoke = async (w: World, keyId: string) =>
  expectJson(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/api-keys/${keyId}`, { method: 'DELETE' }), 200);
const get = (key: string, path: string) => SELF.fetch(`${BASE}${path}`, { headers: { authorization: `Bearer ${key}` } });

describe('revoking an API key ends the streams opened with it', () => {
  it('event streams, the log stream and the events socket close; those of another key stay', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const other = await createApiKey(w.tenant.orgId, { name: 'other' });
    const paths = [`/api/v1/computers/${computer.id}/events`, '/api/v1/events', `/api/v1/computers/${computer.id}/logs/stream`];

    const mine = [];
    const theirs = [];
    for (const p of paths) {
      const res = await get(w.tenant.apiKey, p);
      expect(res.status, p).toBe(200);
      mine.push(new SseReader(res));
      const res2 = await get(other.key, p);
      expect(res2.status, p).toBe(200);
      theirs.push(new SseReader(res2));
    }
    const socket = await connect(`/api/v1/computers/${computer.id}/events?subscribe=process`, { authorization: `Bearer ${w.tenant.apiKey}` }, ['miosa-events-v1']);
    await peer.take('watch.start');

    await revoke(w, w.tenant.keyId);

    expect(socket.closedWith).toEqual({ code: CLOSE_CREDENTIAL_REVOKED, reason: 'credential revoked' });
    for (const reader of mine) {
      // Read past what the stream had (its retry line, last lines): it ends rather than waiting.
      for (;;) {
        const next = await reader.next().catch(() => null);
        if (next === null) break;
      }
    }
    // The other key's streams still get what happens: a stop shows on both event streams.
    await expectJson(await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/stop`, { method: 'POST', headers: { authorization: `Bearer ${other.key}` } }), 200);
    for (const reader of theirs.slice(0, 2)) {
      for (;;) {
        const m = await reader.next();
        if (m?.event === 'computer.stopped') break;
        expect(m).not.toBeNull();
      }
    }
    for (const reader of theirs) await reader.close();

    // Nothing opens with the revoked key any more.
    for (const p of paths) await expectError(await get(w.tenant.apiKey, p), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(`/api/v1/computers/${computer.id}/events?subscribe=process`, { authorization: `Bearer ${w.tenant.apiKey}` }), 401, 'UNAUTHORIZED');
  });

  it("an organization's event log told of a revocation refuses the key's streams even while routes still take the key", async () => {
    const w = await world();
    const stub = env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(w.tenant.orgId));
    const open = new SseReader(await get(w.tenant.apiKey, '/api/v1/events'));
    expect(await stub.endCredential(w.tenant.keyId)).toBe(1);
    expect(await open.next().catch(() => null)).toBeNull();
    await expectError(await get(w.tenant.apiKey, '/api/v1/events'), 401, 'UNAUTHORIZED');
  });
});
