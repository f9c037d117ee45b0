/**
 * Cluster routing against two real model servers serving the tiny model:
 * requests spread over the members, a member that refuses connections is
 * skipped before the answer begins and leaves the rotation, a member killed
 * mid-answer is not retried and leaves too, streamed answers pass chunk by
 * chunk, and every answer names its member.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMBER_HEADER } from '../../durable-objects/cluster/inference-proxy.ts';
import { ManagedModelServer } from '../../host-agent/model-server/managed-server.ts';
import { parseSse } from '../e2e/sse.ts';
import { serveProxy } from './proxy-front.ts';
import { TablePicker } from './table-picker.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let dir: string;
const servers: ManagedModelServer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-cluster-'));
  for (let i = 0; i < 2; i++) {
    const s = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 2, threads: 1 });
    await s.start();
    servers.push(s);
  }
});
afterAll(async () => {
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

function picker(...members: Array<[string, number]>): TablePicker {
  const p = new TablePicker();
  for (const [id, port] of members) p.report(id, { state: 'ready', port, slots: 2, busy: 0, queued: 0 });
  return p;
}

const chat = (url: string, body: object = {}) =>
  fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, ...body }) });

/** A loopback port with nothing listening. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('cluster routing', () => {
  it('spreads requests over the members, each answer naming its member', async () => {
    const p = picker(['host-a', servers[0].port], ['host-b', servers[1].port]);
    const front = await serveProxy(p);
    try {
      const seen: string[] = [];
      for (let i = 0; i < 4; i++) {
        const batch = await Promise.all([chat(front.url), chat(front.url), chat(front.url)]);
        for (const r of batch) {
          expect(r.status).toBe(200);
          expect(((await r.json()) as { object: string }).object).toBe('chat.completion');
          seen.push(r.headers.get(MEMBER_HEADER)!);
        }
      }
      const a = seen.filter((s) => s === 'host-a').length;
      expect(a + seen.filter((s) => s === 'host-b').length).toBe(12);
      expect(a).toBeGreaterThanOrEqual(4);
      expect(a).toBeLessThanOrEqual(8);
      expect([...p.members.values()].every((m) => m.inflight === 0)).toBe(true);
    } finally {
      await front.close();
    }
  });

  it('retries on another member when one refuses the connection, and takes that one out of rotation until it reports healthy', async () => {
    const dead = await closedPort();
    const p = picker(['host-dead', dead], ['host-b', servers[1].port]);
    // The dead member is the first choice: it was picked least recently.
    p.members.get('host-b')!.picked_at = Date.now();
    const front = await serveProxy(p);
    try {
      const r = await chat(front.url);
      expect(r.status).toBe(200);
      expect(r.headers.get(MEMBER_HEADER)).toBe('host-b');
      expect(p.picks).toEqual(['host-dead', 'host-b']);
      expect(p.failures.map((f) => f.host_id)).toEqual(['host-dead']);
      for (let i = 0; i < 3; i++) expect((await chat(front.url)).headers.get(MEMBER_HEADER)).toBe('host-b');
      // Its host says it is healthy again (its server moved to a live port): back in rotation.
      p.report('host-dead', { state: 'ready', port: servers[0].port });
      const after = await Promise.all([chat(front.url), chat(front.url)]);
      expect(after.map((x) => x.headers.get(MEMBER_HEADER)).sort()).toEqual(['host-b', 'host-dead']);
    } finally {
      await front.close();
    }
  });

  it('answers 503 in the OpenAI shape when no member can take the request', async () => {
    const p = picker(['host-dead', await closedPort()]);
    const front = await serveProxy(p);
    try {
      const r = await chat(front.url);
      expect(r.status).toBe(503);
      const body = (await r.json()) as { error: { message: string } };
      expect(body.error.message).toMatch(/no member of this cluster can take the request now \(host-dead: /);
    } finally {
      await front.close();
    }
  });

  it('passes a streamed answer through chunk by chunk, as the member writes it', async () => {
    // A member that writes each chunk only once the client has read the one before: through a proxy that
    // gathered the answer before passing it on, the first chunk would never arrive.
    const client = { read: () => {} };
    const member = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      void (async () => {
        for (let i = 0; i < 5; i++) {
          const seen = new Promise<void>((r) => (client.read = r));
          res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ delta: { content: `t${i} ` } }] })}\n\n`);
          await seen;
        }
        res.end('data: [DONE]\n\n');
      })();
    });
    await new Promise<void>((r) => member.listen(0, '127.0.0.1', r));
    const front = await serveProxy(picker(['host-a', (member.address() as net.AddressInfo).port]));
    try {
      const r = await Promise.race([
        chat(front.url, { stream: true }),
        sleep(30_000).then(() => Promise.reject(new Error('no answer came through while the member waited for its first chunk to be read'))),
      ]);
      expect(r.headers.get('content-type')).toMatch(/text\/event-stream/);
      expect(r.headers.get(MEMBER_HEADER)).toBe('host-a');
      const reader = r.body!.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      const data: string[] = [];
      for (;;) {
        // A bound on waiting, not on speed: a chunk held back waits for ever.
        const next = await Promise.race([reader.read(), sleep(30_000).then(() => 'held' as const)]);
        if (next === 'held') throw new Error(`chunk ${data.length} never came through while the member waited for it to be read`);
        if (next.done) break;
        const parsed = parseSse(buf + decoder.decode(next.value, { stream: true }));
        buf = parsed.rest;
        data.push(...parsed.messages.map((m) => m.data));
        if (parsed.messages.length > 0) client.read();
      }
      expect(data).toEqual([0, 1, 2, 3, 4].map((i) => JSON.stringify({ object: 'chat.completion.chunk', choices: [{ delta: { content: `t${i} ` } }] })).concat('[DONE]'));
    } finally {
      await front.close();
      member.closeAllConnections();
      await new Promise<void>((r) => member.close(() => r()));
    }
  });

  it('passes a real model server\'s streamed answer through whole, ending in [DONE]', async () => {
    const front = await serveProxy(picker(['host-a', servers[0].port]));
    try {
      const r = await chat(front.url, { stream: true, max_tokens: 60 });
      expect(r.headers.get('content-type')).toMatch(/text\/event-stream/);
      const data = parseSse(await r.text()).messages.map((m) => m.data);
      expect(data.at(-1)).toBe('[DONE]');
      const text = data.slice(0, -1).map((d) => (JSON.parse(d) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '').join('');
      expect(text.length).toBeGreaterThan(20);
    } finally {
      await front.close();
    }
  });

  it('never retries once an answer has begun: a member killed mid-answer cuts that answer and leaves the rotation', async () => {
    const victim = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 1, threads: 1 });
    await victim.start();
    const p = picker(['host-victim', victim.port], ['host-b', servers[1].port]);
    p.members.get('host-b')!.picked_at = Date.now();
    const front = await serveProxy(p);
    try {
      const r = await chat(front.url, { stream: true, max_tokens: 3000 });
      expect(r.headers.get(MEMBER_HEADER)).toBe('host-victim');
      const reader = r.body!.getReader();
      await reader.read();
      victim.kill();
      const rest = await (async () => {
        try {
          for (;;) if ((await reader.read()).done) return 'ended';
        } catch {
          return 'broken';
        }
      })();
      // The answer stops short (no [DONE]); it was not re-sent from another member.
      expect(['ended', 'broken']).toContain(rest);
      expect(p.picks).toEqual(['host-victim']);
      // The next request finds the victim gone and goes to the other member.
      const next = await chat(front.url);
      expect(next.status).toBe(200);
      expect(next.headers.get(MEMBER_HEADER)).toBe('host-b');
      expect(p.members.get('host-victim')!.failed_at).not.toBeNull();
    } finally {
      await front.close();
      await victim.stop();
    }
  });

  it('sends the request of a full member to another one, and keeps the full one in rotation', async () => {
    const busy = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 1, threads: 1, maxQueue: 0 });
    await busy.start();
    const p = picker(['host-busy', busy.port], ['host-b', servers[1].port]);
    const front = await serveProxy(p);
    const hog = new AbortController();
    try {
      // Fill the busy member's one slot behind the proxy's back.
      const hogging = fetch(`${busy.baseUrl()}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 3000, stream: true }), signal: hog.signal });
      const first = await hogging;
      await first.body!.getReader().read();
      p.members.get('host-b')!.picked_at = Date.now();
      const r = await chat(front.url);
      expect(r.status).toBe(200);
      expect(r.headers.get(MEMBER_HEADER)).toBe('host-b');
      expect(p.picks).toEqual(['host-busy', 'host-b']);
      expect(p.members.get('host-busy')!.failed_at).toBeNull();
    } finally {
      hog.abort();
      await front.close();
      await busy.stop();
    }
  });
});
