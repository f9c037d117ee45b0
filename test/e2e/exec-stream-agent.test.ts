/**
 * Streaming exec across agent connection failures (real Worker, agent and
 * sandbox): the command lives in the computer, the viewer's stream lives in
 * the Durable Object, and the link between them may drop at any moment.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOffline, dropAgentSockets } from './agent-control.ts';
import { newTenant, type Client } from './client.ts';
import { Streams, sha256, stdoutOf, type Ticket } from './exec-streams.ts';
import { SseReader, type SseMessage } from './sse.ts';

const numbered = (from: number, to: number, prefix = ''): string => {
  let s = '';
  for (let i = from; i <= to; i++) s += `${prefix}${i}\n`;
  return s;
};

/** Reads a stream to its end, calling `at(n)` after the n-th output event. */
async function readAll(s: Streams, t: Ticket, at: (n: number) => void | Promise<void>): Promise<SseMessage[]> {
  const reader = new SseReader(await s.open(t));
  const msgs: SseMessage[] = [];
  for (let m = await reader.next(); m; m = await reader.next()) {
    msgs.push(m);
    if (m.event === 'output') await at(msgs.length);
  }
  return msgs;
}

describe('streaming exec while the agent connection fails', () => {
  let api: Client;
  let s: Streams;

  beforeAll(async () => {
    api = await newTenant('stream-agent');
    s = new Streams(api, await api.runningComputer('stream-agent'));
  });

  afterAll(async () => {
    if (s) await api.del(`/computers/${s.id}`);
  });

  /** Waits until the agent serves the computer again. */
  const agentBack = async () => {
    const deadline = Date.now() + 30_000;
    while ((await api.exec(s.id, 'true')).status !== 200) {
      if (Date.now() > deadline) throw new Error('the agent did not come back within 30 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('the agent socket killed twice mid-stream: the viewer sees every line exactly once, in order', async () => {
    const t = await s.start('for i in $(seq 1 300); do echo line-$i; sleep 0.01; done', 120);
    const msgs = await readAll(s, t, (n) => {
      if (n === 60 || n === 180) dropAgentSockets();
    });
    expect(stdoutOf(msgs)).toBe(numbered(1, 300, 'line-'));
    expect(msgs[msgs.length - 1].event).toBe('exit');
    expect(JSON.parse(msgs[msgs.length - 1].data)).toMatchObject({ exit_code: 0 });
    await agentBack();
    // As long as the command's own limit and more: 300 processes take a while in an emulated VM on a busy host.
  }, 180_000);

  it('drops while megabytes are in flight lose and repeat nothing', async () => {
    const t = await s.start('for b in 0 1 2 3 4; do seq $((b*100000+1)) $((b*100000+100000)); sleep 0.3; done', 120);
    const msgs = await readAll(s, t, (n) => {
      if (n % 90_000 === 0) dropAgentSockets();
    });
    expect(sha256(stdoutOf(msgs))).toBe(sha256(numbered(1, 500_000)));
    expect(msgs[msgs.length - 1].event).toBe('exit');
    await agentBack();
  }, 120_000);

  it('while the agent is away a new command is a 502 AGENT_UNAVAILABLE and does not run; a running one resumes when it returns', async () => {
    const t = await s.start('for i in $(seq 1 100); do echo tick-$i; sleep 0.02; done', 120);
    const viewer = new SseReader(await s.open(t));
    const first = await viewer.next();
    const marker = `/tmp/never-${randomBytes(4).toString('hex')}`;
    const resume = await agentOffline();
    try {
      const r = await api.post<{ error: { code: string } }>(`/computers/${s.id}/exec/stream`, { command: `touch ${marker}` });
      expect(r.status).toBe(502);
      expect(r.body.error.code).toBe('AGENT_UNAVAILABLE');
      // Long enough for the command in the computer to finish unobserved.
      await new Promise((res) => setTimeout(res, 2500));
    } finally {
      resume();
    }
    const rest: SseMessage[] = [];
    for (let m = await viewer.next(); m; m = await viewer.next()) rest.push(m);
    expect(stdoutOf([first!, ...rest])).toBe(numbered(1, 100, 'tick-'));
    expect(rest[rest.length - 1].event).toBe('exit');
    await agentBack();
    expect((await api.exec(s.id, `test -e ${marker} && echo ran || echo absent`)).body.output).toBe('absent\n');
  }, 60_000);
});
