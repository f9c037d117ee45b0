/**
 * Events end to end on a real computer: its SSE stream with reasons and
 * Last-Event-ID resume, and the events socket with file and process events
 * made by real activity inside it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { SseReader } from './sse.ts';
import { EventsSocket } from './sockets.ts';

let api: Client;
let id: string;

beforeAll(async () => {
  api = await newTenant('events');
  id = await api.runningComputer('events');
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

interface Envelope {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

async function sse(path: string, lastEventId?: string): Promise<SseReader> {
  const headers: Record<string, string> = { authorization: `Bearer ${api.key}` };
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  const res = await fetch(`${api.apiUrl}${path}`, { headers });
  expect(res.status).toBe(200);
  return new SseReader(res);
}

async function next(reader: SseReader, type: string): Promise<Envelope[]> {
  const seen: Envelope[] = [];
  for (;;) {
    const m = await reader.next();
    if (!m) throw new Error(`stream ended before ${type}`);
    const e = JSON.parse(m.data) as Envelope;
    seen.push(e);
    if (e.type === type) return seen;
  }
}

const events = (query: string) => EventsSocket.open(api, id, query);

describe('events of a real computer', () => {
  it('SSE: a command and a restart show with their reasons; a reconnect with Last-Event-ID continues where it stopped', async () => {
    const reader = await sse(`/computers/${id}/events`);
    expect((await api.exec(id, 'echo hi')).status).toBe(200);
    const exec = await next(reader, 'exec.ended');
    expect(exec.map((e) => e.type)).toEqual(['exec.started', 'exec.ended']);
    expect(exec[1].data).toMatchObject({ kind: 'sync', exit_code: 0 });
    await reader.close();

    expect((await api.post(`/computers/${id}/restart`)).status).toBe(200);
    const resumed = await sse(`/computers/${id}/events`, exec[1].id);
    const restart = await next(resumed, 'computer.running');
    expect(restart.map((e) => [e.type, e.data.reason])).toEqual([
      ['computer.restarting', 'requested'],
      ['computer.running', 'requested'],
    ]);
    expect(Number(restart[0].id)).toBeGreaterThan(Number(exec[1].id));
    await resumed.close();
  });

  it('the events socket: file events from writes in the computer, process events from a command', async () => {
    await api.exec(id, 'mkdir -p /workspace/watched');
    const s = await events('subscribe=file,process&paths=/workspace/watched');
    await new Promise((r) => setTimeout(r, 500)); // the process scan's first look is its baseline
    await api.exec(id, 'echo data > /workspace/watched/new.txt && mv /workspace/watched/new.txt /workspace/watched/renamed.txt && sleep 1.5');
    const created = await s.until((f) => f.type === 'file.created' && f.data.path === '/workspace/watched/new.txt');
    expect(created.timestamp).toMatch(/Z$/);
    await s.until((f) => f.type === 'file.modified' && f.data.path === '/workspace/watched/new.txt');
    await s.until((f) => f.type === 'file.deleted' && f.data.path === '/workspace/watched/new.txt');
    await s.until((f) => f.type === 'file.created' && f.data.path === '/workspace/watched/renamed.txt');
    const sleeper = await s.until((f) => f.type === 'process.started' && f.data.cmd === 'sleep 1.5');
    await s.until((f) => f.type === 'process.exited' && f.data.pid === sleeper.data.pid);
    s.ws.close();
  });

  it('without a desktop, window is producer.unavailable (and a name that is no producer an error), the socket stays open and window starts when the desktop comes up; stopping the computer closes it with 4001', async () => {
    // This computer's desktop cannot run: its X server cannot start, and the running desktop is gone.
    expect((await api.exec(id, 'sudo chmod 000 /usr/bin/Xvnc && pkill -KILL -u user -f "[d]esktop.py|[X]vnc|[x]fce4" ; true')).status).toBe(200);
    const noDesktop = await api.get<{ error: { code: string } }>(`/computers/${id}/desktop/windows`);
    expect(noDesktop.status).toBe(503);
    expect(noDesktop.body.error.code).toBe('DESKTOP_STARTING');

    const s = await events('subscribe=window,nonsense,idle&idle_threshold_sec=5');
    const unavailable = await s.until((f) => f.type === 'producer.unavailable' && f.data.producer === 'window');
    expect(unavailable.data.reason).toBe('the desktop is not up yet; its events start when it is');
    await s.until((f) => f.type === 'error' && String(f.data.message).includes('nonsense'));
    expect(s.frames.some((f) => f.type === 'producer.started')).toBe(false);

    expect((await api.exec(id, 'sudo chmod 755 /usr/bin/Xvnc')).status).toBe(200);
    await s.until((f) => f.type === 'producer.started' && f.data.producer === 'window', 90_000);
    expect((await api.post(`/computers/${id}/stop`)).status).toBe(200);
    expect((await s.closed).code).toBe(4001);
    expect((await api.post(`/computers/${id}/start`)).status).toBe(200);
  }, 180_000);
});
