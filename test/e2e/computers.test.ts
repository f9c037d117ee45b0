import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';

describe('computers end to end: real Worker, real agent, real sandboxes', () => {
  let api: Client;
  let id: string;

  beforeAll(async () => {
    api = await newTenant('lifecycle');
    id = await api.runningComputer('lifecycle');
  });

  afterAll(async () => {
    if (id) await api.del(`/computers/${id}`);
  });

  it('runs the spec examples: python3, python exec, sudo apt-get', async () => {
    const r = await api.exec(id, "python3 -c 'print(2+2)'");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ output: '4\n', exit_code: 0 });

    const py = await api.post(`/computers/${id}/exec/python`, { code: 'import sys\nprint(sys.version_info[0])\nprint(2 + 2)' });
    expect(py.status).toBe(200);
    expect(py.body).toMatchObject({ output: '3\n4\n', exit_code: 0 });

    const whoami = await api.exec(id, 'whoami; pwd; sudo -n whoami');
    expect(whoami.body.output).toBe('user\n/workspace\nroot\n');
  });

  it('keeps the disk across stop and start, and stop really ends processes', async () => {
    await api.exec(id, 'echo kept > /workspace/marker.txt; (sleep 1000 &) ; true');
    const stop = await api.post(`/computers/${id}/stop`);
    expect(stop.status).toBe(200);
    expect(stop.body.status).toBe('stopped');

    const refused = await api.exec(id, 'true');
    expect(refused.status).toBe(409);
    expect((refused.body as unknown as { error: { code: string } }).error.code).toBe('COMPUTER_NOT_RUNNING');

    const start = await api.post(`/computers/${id}/start`);
    expect(start.status).toBe(200);
    expect(start.body.status).toBe('running');
    const r = await api.exec(id, 'cat /workspace/marker.txt; pgrep -x sleep || echo no-sleep');
    expect(r.body.output).toBe('kept\nno-sleep\n');
  });

  it('a timeout kills the command with 124 and keeps the output so far', async () => {
    const r = await api.exec(id, 'echo before; sleep 30; echo after', 1);
    expect(r.status).toBe(200);
    expect(r.body.exit_code).toBe(124);
    expect(r.body.output).toBe('before\n');
    expect(r.body.timed_out).toBe(true);
  });
});
