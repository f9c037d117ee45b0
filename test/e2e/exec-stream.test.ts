import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { SseReader, readSse } from './sse.ts';

interface Ticket {
  ticket: string;
  expires_at: number;
  stream_url: string;
}

describe('streaming exec over SSE, end to end', () => {
  let api: Client;
  let id: string;
  let origin: string;

  beforeAll(async () => {
    api = await newTenant('stream');
    id = await api.runningComputer('stream');
    origin = new URL(api.apiUrl).origin;
  });

  afterAll(async () => {
    if (id) await api.del(`/computers/${id}`);
  });

  const start = async (command: string, timeout?: number) => {
    const r = await api.post<Ticket>(`/computers/${id}/exec/stream`, { command, timeout });
    expect(r.status).toBe(202);
    return r.body;
  };
  const events = (t: Ticket, lastEventId?: string) =>
    fetch(origin + t.stream_url, { headers: { accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) } });

  it('delivers stdout and stderr lines in order, kept apart, then exit; a viewer a second late loses nothing', async () => {
    const t = await start('echo one; echo two >&2; echo three; printf tail');
    await new Promise((r) => setTimeout(r, 1000));
    const res = await events(t);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const msgs = await readSse(res);
    const out = msgs.filter((m) => m.event === 'output').map((m) => JSON.parse(m.data));
    expect(out.filter((o) => o.stream === 'stdout').map((o) => o.line)).toEqual(['one\n', 'three\n', 'tail']);
    expect(out.filter((o) => o.stream === 'stderr').map((o) => o.line)).toEqual(['two\n']);
    const last = msgs[msgs.length - 1];
    expect(last.event).toBe('exit');
    expect(JSON.parse(last.data)).toMatchObject({ exit_code: 0 });
    expect(msgs.every((m) => m.id !== null)).toBe(true);
  });

  it('DELETE with the ticket cancels a running command: its whole process group ends and the viewer gets the exit', async () => {
    const t = await start('sleep 300 & echo started; wait', 300);
    const reader = new SseReader(await events(t));
    expect(JSON.parse((await reader.next())!.data)).toMatchObject({ line: 'started\n' });
    const cancelled = await fetch(origin + t.stream_url, { method: 'DELETE' });
    expect(cancelled.status).toBe(204);
    const exit = await reader.next();
    expect(exit?.event).toBe('exit');
    // bash was ended by SIGTERM (128 + 15), and so was its background child, which shares the group.
    expect(JSON.parse(exit!.data)).toMatchObject({ exit_code: 143 });
    expect(await reader.next()).toBeNull();
    const left = await api.exec(id, 'pgrep -x sleep || true');
    expect(left.body.output).toBe('');
  });

  it('resumes after Last-Event-ID with exactly the events after it', async () => {
    const t = await start('for i in $(seq 1 200); do echo line-$i; done; exit 3');
    const full = await readSse(await events(t));
    expect(full.filter((m) => m.event === 'output')).toHaveLength(200);
    for (const cut of [1, 57, 150, 199]) {
      const rest = await readSse(await events(t, full[cut - 1].id!));
      expect(rest.map((m) => m.id)).toEqual(full.slice(cut).map((m) => m.id));
      expect(rest.map((m) => m.data)).toEqual(full.slice(cut).map((m) => m.data));
    }
    expect(JSON.parse(full[full.length - 1].data)).toMatchObject({ exit_code: 3 });
  });

  it('a timeout ends the stream with a timeout event', async () => {
    const t = await start('echo started; sleep 30', 1);
    const msgs = await readSse(await events(t));
    expect(msgs.map((m) => m.event)).toEqual(['output', 'timeout']);
    expect(JSON.parse(msgs[1].data)).toEqual({ timeout_seconds: 1 });
  });

  it('an unknown ticket is a 401 in the error envelope', async () => {
    const res = await fetch(`${origin}/api/v1/computers/${id}/exec/stream/events?ticket=tkt_nope`);
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { code: string; request_id: string } };
    expect(body.error.code).toBe('UNAUTHORIZED');
  });

  it('a shell that does not exist is refused', async () => {
    const r = await api.post(`/computers/${id}/exec/stream`, { command: 'true', shell: '/bin/nope' });
    expect(r.status).toBe(400);
  });
});
