/**
 * Terminals end to end: a login shell on a real PTY in a real sandbox,
 * reached through the Worker, surviving its sockets and its agent link.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropAgentSockets } from './agent-control.ts';
import { newTenant, type Client } from './client.ts';
import { TerminalSocket, createTerminal } from './sockets.ts';

describe('terminals, end to end', () => {
  let api: Client;
  let id: string;

  beforeAll(async () => {
    api = await newTenant('terminal');
    id = await api.runningComputer('terminal');
  });

  afterAll(async () => {
    if (id) await api.del(`/computers/${id}`);
  });

  it('a shell that does not exist in the computer is a 400 that names it, as exec/stream answers; no session is made', async () => {
    const r = await api.post<{ error: { code: string; message: string } }>(`/computers/${id}/terminal`, { shell: '/bin/no-such-shell' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/shell \/bin\/no-such-shell does not exist in the computer/) });
    const s = await api.post<{ error: { code: string } }>(`/computers/${id}/exec/stream`, { command: 'true', shell: '/bin/no-such-shell' });
    expect(s.status).toBe(400);
    expect((await api.post(`/computers/${id}/terminal`, { shell: '/bin/sh' })).status).toBe(201);
  });

  // The shell echoes what is typed; only a command's output has its $((…)) and $RANDOM expanded.
  it('a re-attached socket gets the recent output replayed, and the same shell goes on', async () => {
    const session = await createTerminal(api, id, { cols: 100, rows: 30 });
    const first = await TerminalSocket.open(session.ws_url);
    first.type('echo marker-$RANDOM pid-$$\n');
    const [, marker, pid] = await first.out.waitFor(/(marker-\d+) (pid-\d+)\r\n/);
    first.drop();

    const second = await TerminalSocket.open(session.ws_url);
    await second.out.waitFor(new RegExp(`${marker} ${pid}\\r\\n`));
    const from = second.out.text.length;
    second.type('echo again-$((6*7)) pid-$$; stty size\n');
    await second.out.waitFor(new RegExp(`again-42 ${pid}\\r\\n30 100\\r\\n`), from);
    second.type('exit 5\n');
    expect(await second.closed).toEqual({ code: 4000, reason: 'shell exited with code 5' });
  });

  it('the agent socket killed under a running terminal: every line arrives once and the shell goes on', async () => {
    const session = await createTerminal(api, id);
    const term = await TerminalSocket.open(session.ws_url);
    term.type('for i in $(seq 1 150); do echo t-$i; sleep 0.02; done; echo loop-$((1+1))-done\n');
    // Generous waits: in a VM under software emulation each of the loop's `sleep`s is a slow fork and exec.
    await term.out.waitFor(/\nt-20\r\n/, 0, 120_000);
    dropAgentSockets();
    await term.out.waitFor(/\nt-90\r\n/, 0, 120_000);
    dropAgentSockets();
    await term.out.waitFor(/loop-2-done\r\n/, 0, 120_000);
    const lines = [...term.out.text.matchAll(/(?:^|\r)t-(\d+)\r$/gm)].map((m) => Number(m[1]));
    expect(lines).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));

    // The same shell answers once the agent is back.
    const deadline = Date.now() + 30_000;
    while ((await api.exec(id, 'true')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const from = term.out.text.length;
    term.type('echo still-$((40+2))\n');
    await term.out.waitFor(/still-42\r\n/, from);
    term.type('exit\n');
    expect((await term.closed).code).toBe(4000);
  }, 420_000);
});
