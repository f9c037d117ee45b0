/**
 * Exec over WebSocket (`miosa-exec-v1`) end to end: a real process in a real
 * sandbox driven interactively through the Worker and the agent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropAgentSockets } from './agent-control.ts';
import { newTenant, type Client } from './client.ts';
import { ExecSocket, dialExec } from './sockets.ts';

describe('exec over WebSocket, end to end', () => {
  let api: Client;
  let id: string;

  beforeAll(async () => {
    api = await newTenant('exec-socket');
    id = await api.runningComputer('exec-socket');
  });

  afterAll(async () => {
    if (id) await api.del(`/computers/${id}`);
  });

  it("a working directory that does not exist is a 400 in the host's words: nothing the computer's agent said reaches the client", async () => {
    const ws = dialExec(api, id, { command: 'true', cwd: '/no/such/dir' });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      ws.once('open', () => reject(new Error('the socket opened')));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
    });
    expect(answer.status).toBe(400);
    const err = (JSON.parse(answer.body) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/could not start the command/);
    // The guest's own exception text (FileNotFoundError, its repr, its paths) stays in the agent's log.
    expect(err.message).not.toMatch(/Error|Errno|\/no\/such\/dir|\(|'/);
  });

  it('stdin reaches the process line by line and each answer comes back before the next line is sent', async () => {
    const reverse = 'import sys\nfor l in sys.stdin: print(l.strip()[::-1], flush=True)\nprint("eof", file=sys.stderr)';
    const p = await ExecSocket.open(api, id, { command: `python3 -c '${reverse}'` });
    for (const word of ['hello', 'stressed', 'añejo ✓']) {
      const from = p.stdout.text.length;
      p.write(`${word}\n`);
      await p.stdout.waitFor(new RegExp(`${[...word].reverse().join('')}\n`), from);
    }
    p.closeStdin();
    expect(await p.closed).toEqual({ code: 1000, reason: 'exited with code 0' });
    expect(p.exitCode).toBe(0);
    expect(p.stdout.text).toBe('olleh\ndesserts\n✓ ojeña\n');
    expect(p.stderr.text).toBe('eof\n');
  });

  it('a paste goes on through agent connection drops: the process reads every byte once, in order', async () => {
    const paste = randomBytes(4 << 20);
    const p = await ExecSocket.open(api, id, {
      command: `python3 -c 'import sys, hashlib; d = sys.stdin.buffer.read(); print(hashlib.sha256(d).hexdigest(), len(d))'`,
    });
    const frame = 64 * 1024;
    for (let at = 0, n = 0; at < paste.length; at += frame, n++) {
      p.write(paste.subarray(at, at + frame));
      // Drops land while stdin is in flight between the object, the agent and the process.
      if (n === 16 || n === 40) {
        await new Promise((r) => setTimeout(r, 20));
        dropAgentSockets();
      }
    }
    p.closeStdin();
    expect((await p.closed).code).toBe(1000);
    expect(p.stdout.text).toBe(`${createHash('sha256').update(paste).digest('hex')} ${paste.length}\n`);
  }, 60_000);

  it('with tty=true the process has a terminal of the asked size, and a resize frame changes it', async () => {
    const p = await ExecSocket.open(api, id, { command: 'stty size; while read -r x; do stty size; done', tty: 'true', rows: '30', cols: '100' });
    await p.stdout.waitFor(/30 100\r\n/);
    p.resize(40, 120);
    // The resize and the keystrokes travel apart: ask again until the new size shows (or give up).
    let size = '';
    for (let i = 0; i < 50 && size !== '40 120'; i++) {
      const from = p.stdout.text.length;
      p.write('\n');
      size = (await p.stdout.waitFor(/(\d+ \d+)\r\n/, from))[1];
    }
    expect(size).toBe('40 120');
    p.closeStdin();
    // EOF on a terminal is ^D, which ends `read`.
    expect((await p.closed).code).toBe(1000);
    expect(p.exitCode).toBe(0);
  });

  it('a command that fails reports its exit code and its stderr', async () => {
    const p = await ExecSocket.open(api, id, { command: 'echo out; echo err >&2; exit 42' });
    expect((await p.closed).code).toBe(1000);
    expect(p.exitCode).toBe(42);
    expect(p.stdout.text).toBe('out\n');
    expect(p.stderr.text).toBe('err\n');
  });
});
