/**
 * Streaming exec end to end (real Worker, agent and sandbox): what a viewer
 * receives is exactly what the command printed, however it reads — resuming
 * at random points, several at once, or leaving and coming back.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LINE_CHARS } from '../../durable-objects/exec/line-splitter.ts';
import { newTenant, type Client } from './client.ts';
import { Streams, outputs, seeded, sha256, stdoutOf, testSeed } from './exec-streams.ts';
import { SseReader, readSse, type SseMessage } from './sse.ts';

describe('streaming exec output, end to end', () => {
  let api: Client;
  let s: Streams;

  beforeAll(async () => {
    api = await newTenant('stream-output');
    s = new Streams(api, await api.runningComputer('stream-output'));
  });

  afterAll(async () => {
    if (s) await api.del(`/computers/${s.id}`);
  });

  it('resumes after Last-Event-ID at random points and rebuilds 4 MB of output byte for byte', async () => {
    const seed = testSeed();
    const rand = seeded(seed);
    const file = `/tmp/resume-${randomBytes(4).toString('hex')}.b64`;
    const t = await s.start(`head -c 3000000 /dev/urandom | base64 | tee ${file}`, 120);
    const lines: string[] = [];
    let last: string | null = null;
    let terminal: SseMessage | null = null;
    let connections = 0;
    while (!terminal) {
      const res = await s.open(t, last);
      expect(res.status, `seed ${seed}`).toBe(200);
      connections++;
      const reader = new SseReader(res);
      const budget = 1 + Math.floor(rand() * 6000);
      for (let n = 0; n < budget && !terminal; n++) {
        const m = await reader.next();
        expect(m, `seed ${seed}: the stream ended before the terminal event`).not.toBeNull();
        if (last !== null) expect(Number(m!.id), `seed ${seed}`).toBeGreaterThan(Number(last));
        last = m!.id;
        if (m!.event === 'output') lines.push((JSON.parse(m!.data) as { line: string }).line);
        else terminal = m;
      }
      await reader.close();
    }
    expect(terminal.event).toBe('exit');
    expect(JSON.parse(terminal.data)).toMatchObject({ exit_code: 0 });
    expect(connections, `seed ${seed}`).toBeGreaterThan(3);
    const inside = (await s.sh(`sha256sum ${file}`)).split(' ')[0];
    expect(sha256(lines.join('')), `seed ${seed}`).toBe(inside);
  });

  it('binary output becomes U+FFFD where it is not UTF-8 and the stream still ends with exit', async () => {
    const file = `/tmp/bin-${randomBytes(4).toString('hex')}`;
    await s.sh(`head -c 100000 /dev/urandom > ${file}`);
    const bytes = Buffer.from(await s.sh(`base64 -w0 ${file}`), 'base64');
    expect(bytes.byteLength).toBe(100_000);
    const msgs = await s.all(await s.start(`cat ${file}`));
    expect(msgs[msgs.length - 1].event).toBe('exit');
    expect(JSON.parse(msgs[msgs.length - 1].data)).toMatchObject({ exit_code: 0 });
    const text = stdoutOf(msgs);
    expect(text).toContain('\uFFFD');
    // Exactly what a browser's TextDecoder makes of the same bytes.
    expect(text).toBe(new TextDecoder().decode(bytes));
  });

  it('a 200 000-character line arrives in bounded pieces that join back', async () => {
    const msgs = await s.all(await s.start(`head -c 200000 /dev/zero | tr '\\0' a; echo; echo after`));
    const out = outputs(msgs);
    expect(out.length).toBeGreaterThan(2);
    for (const o of out) expect(o.line.length).toBeLessThanOrEqual(MAX_LINE_CHARS);
    expect(out.map((o) => o.line).join('')).toBe(`${'a'.repeat(200_000)}\nafter\n`);
    expect(out[out.length - 1].line).toBe('after\n');
    expect(msgs[msgs.length - 1].event).toBe('exit');
  });

  it('several viewers of one command, one joining late, all get identical events', async () => {
    const t = await s.start('sleep 0.5; for i in $(seq 1 300); do echo line-$i; [ $((i % 50)) = 0 ] && sleep 0.1; done; echo bye >&2');
    const early = Array.from({ length: 5 }, () => s.all(t));
    const firstLine = new SseReader(await s.open(t));
    await firstLine.next();
    const late = s.all(t);
    const seen = await Promise.all([...early, late]);
    await firstLine.close();
    const expected = Array.from({ length: 300 }, (_, i) => `line-${i + 1}\n`);
    expect(outputs(seen[0]).filter((o) => o.stream === 'stdout').map((o) => o.line)).toEqual(expected);
    expect(outputs(seen[0]).filter((o) => o.stream === 'stderr').map((o) => o.line)).toEqual(['bye\n']);
    for (const msgs of seen.slice(1)) expect(msgs).toEqual(seen[0]);
  });

  it('a command keeps running when its viewer leaves; coming back with Last-Event-ID gives the rest and the exit', async () => {
    const done = `/tmp/done-${randomBytes(4).toString('hex')}`;
    const t = await s.start(`for i in $(seq 1 60); do echo n-$i; sleep 0.03; done; touch ${done}; exit 7`);
    const reader = new SseReader(await s.open(t));
    const first: SseMessage[] = [];
    for (let i = 0; i < 5; i++) first.push((await reader.next())!);
    await reader.close();
    // Nobody watches while the command runs to its end.
    await s.until(`-f ${done}`);
    const rest = await readSse(await s.open(t, first[4].id));
    const all = [...first, ...rest];
    expect(outputs(all).map((o) => o.line)).toEqual(Array.from({ length: 60 }, (_, i) => `n-${i + 1}\n`));
    expect(all[all.length - 1].event).toBe('exit');
    expect(JSON.parse(all[all.length - 1].data)).toMatchObject({ exit_code: 7 });
  });

  it('after the terminal event, a reconnect with the last id is a 204 (EventSource stops); an earlier id gets the rest', async () => {
    const t = await s.start('echo a; echo b; exit 2');
    const msgs = await s.all(t);
    expect(msgs.map((m) => m.event)).toEqual(['output', 'output', 'exit']);
    const after = await s.open(t, msgs[2].id);
    expect(after.status).toBe(204);
    expect(await after.text()).toBe('');
    expect(await readSse(await s.open(t, msgs[0].id))).toEqual(msgs.slice(1));
  });

  it('a ticket is good for 60 seconds from its issue', async () => {
    const before = Math.floor(Date.now() / 1000);
    const t = await s.start('true');
    const after = Math.ceil(Date.now() / 1000);
    expect(t.expires_at).toBeGreaterThanOrEqual(before + 60);
    expect(t.expires_at).toBeLessThanOrEqual(after + 60);
    expect(t.stream_url).toBe(`/api/v1/computers/${s.id}/exec/stream/events?ticket=${encodeURIComponent(t.ticket)}`);
  });

  it('an idle stream gets heartbeat comments and carries on after them', async () => {
    const go = `/tmp/go-${randomBytes(4).toString('hex')}`;
    const t = await s.start(`while [ ! -f ${go} ]; do sleep 0.1; done; echo woke`, 120);
    const reader = new SseReader(await s.open(t));
    const first = await reader.nextItem();
    expect(first).toEqual({ comment: 'heartbeat' });
    await s.sh(`touch ${go}`);
    const woke = await reader.next();
    expect(woke?.event).toBe('output');
    expect(JSON.parse(woke!.data)).toEqual({ line: 'woke\n', stream: 'stdout' });
    expect((await reader.next())?.event).toBe('exit');
    expect(await reader.next()).toBeNull();
  }, 60_000);
});
