/**
 * Nothing a sync command did is lost or repeated across an agent redial
 * (real Worker, agent and sandbox). A POST /exec or /exec/python running when
 * the agent's sockets drop gets its real result once the agent is back; one
 * whose agent stays away past the request's time is a 504, and the retry
 * with the same Idempotency-Key gets that command's result without running
 * it again. stdout and stderr come apart beside the page's combined output.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOffline, dropAgentSockets } from './agent-control.ts';
import { newTenant, type Client } from './client.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ExecAnswer {
  output: string;
  stdout: string;
  stderr: string;
  exit_code: number;
  timed_out: boolean;
}

let api: Client;
let id: string;

beforeAll(async () => {
  api = await newTenant('exec-redial');
  id = await api.runningComputer('exec-redial');
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

const exec = (body: Record<string, unknown>, key?: string, path = 'exec') =>
  api.call<ExecAnswer & { error?: { code: string; message: string } }>('POST', `/computers/${id}/${path}`, body, key ? { 'idempotency-key': key } : {});

/** Waits until the agent serves the computer again. */
async function agentBack(): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await api.exec(id, 'true')).status !== 200) {
    if (Date.now() > deadline) throw new Error('the agent did not come back within 60 s');
    await sleep(100);
  }
}

describe('sync exec across an agent redial', () => {
  it('stdout and stderr come apart, and output has them both in the order they were written', async () => {
    const r = await exec({ command: 'echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ output: 'one\ntwo\nthree\n', stdout: 'one\nthree\n', stderr: 'two\n', exit_code: 0 });
  });

  for (const path of ['exec', 'exec/python'] as const) {
    it(`POST /${path} running when the agent's sockets drop twice answers its real result, and ran once`, async () => {
      const mark = `/tmp/ran-${randomUUID()}`;
      const body =
        path === 'exec'
          ? { command: `echo start; echo x >> ${mark}; sleep 3; echo end; wc -l < ${mark}`, timeout: 60 }
          : { code: `import time\nprint("start", flush=True)\nopen("${mark}", "a").write("x\\n")\ntime.sleep(3)\nprint("end")\nprint(len(open("${mark}").readlines()))`, timeout: 60 };
      const answer = exec(body, undefined, path);
      await sleep(800);
      dropAgentSockets();
      await sleep(800);
      dropAgentSockets();
      const r = await answer;
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ output: 'start\nend\n1\n', exit_code: 0 });
      await agentBack();
    });
  }

  it('an agent away past the request\'s time: 504 RESULT_PENDING; the retry with the same key gets the result and runs nothing again', async () => {
    const mark = `/tmp/once-${randomUUID()}`;
    const key = randomUUID();
    const body = { command: `echo ran >> ${mark}; sleep 2; cat ${mark}`, timeout: 4 };
    const answer = exec(body, key);
    await sleep(1000);
    const resume = await agentOffline();
    let first;
    try {
      first = await answer;
    } finally {
      resume();
    }
    expect(first.status, JSON.stringify(first.body)).toBe(504);
    expect(first.body.error?.code).toBe('RESULT_PENDING');
    await agentBack();
    const retry = await exec(body, key);
    expect(retry.status, JSON.stringify(retry.body)).toBe(200);
    expect(retry.body).toMatchObject({ output: 'ran\n', exit_code: 0 });
    // Once: the command's own file says so, and the next retry is a replay of the stored answer.
    expect((await api.exec(id, `cat ${mark}`)).body.output).toBe('ran\n');
    const replay = await exec(body, key);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toMatchObject({ output: 'ran\n' });
  }, 120_000);
});
