/**
 * The recipes of spec/04-exec-stream.txt, their code as the page prints it,
 * run against the local Hangar. The SDKs they call are not installable here,
 * so each language gets the least client the page describes (POST for a
 * ticket, then its Server-Sent Events as `{type, data}`): in JavaScript
 * below, with `data` keys as the page's JavaScript reads them (`exitCode`);
 * in Python, recipes/stream_client.py. The programs they run (`make build`,
 * `long-task`, `myapp`) are set up in the computer first; the Quick Start
 * installs a package the host's pip mirror holds instead of torch.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import type { Ticket } from './exec-streams.ts';
import { SseReader } from './sse.ts';

const run = promisify(execFile);

// The page's recipes use event.data untyped, as an SDK's loosely typed payload.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type PageEvent = { type: string; data: Record<string, any> };

const camel = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), v]));

/** `client.exec.stream(computerId, {command, timeout})` as the page's JavaScript uses it. */
function pageClient(api: Client) {
  const origin = new URL(api.apiUrl).origin;
  return {
    exec: {
      async *stream(computerId: string, opts: { command: string; timeout?: number }): AsyncGenerator<PageEvent> {
        const t = await api.post<Ticket>(`/computers/${computerId}/exec/stream`, opts);
        if (t.status !== 202) throw new Error(`exec/stream: ${t.status} ${JSON.stringify(t.body)}`);
        const reader = new SseReader(await fetch(origin + t.body.stream_url, { headers: { accept: 'text/event-stream' } }));
        for (let m = await reader.next(); m; m = await reader.next()) yield { type: m.event, data: camel(JSON.parse(m.data) as Record<string, unknown>) };
      },
    },
  };
}

/** A Python recipe, run as a program: its stdout, stderr and exit code. */
async function pythonRecipe(api: Client, computerId: string, name: string): Promise<{ stdout: string; stderr: string; code: number }> {
  const dir = path.join(import.meta.dirname, 'recipes');
  const args = [path.join(dir, 'run_recipe.py'), new URL(api.apiUrl).origin, api.key, computerId, name];
  try {
    const { stdout, stderr } = await run('python3', args, { cwd: dir, timeout: 180_000 });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

describe('the recipes of the streaming exec page', () => {
  let api: Client;
  let computerId: string;
  let timedOut: ReturnType<typeof pythonRecipe>;

  const sh = async (command: string) => {
    const r = await api.exec(computerId, command, 120);
    expect(r.body.exit_code, r.body.output).toBe(0);
  };

  beforeAll(async () => {
    api = await newTenant('recipes');
    computerId = await api.runningComputer('recipes');
    await sh(`printf '#!/bin/sh\\necho starting; sleep 600\\n' | sudo tee /usr/local/bin/long-task >/dev/null && sudo chmod +x /usr/local/bin/long-task`);
    // "Timeout handling" waits out its 60 s timeout: it runs while the others do.
    timedOut = pythonRecipe(api, computerId, 'timeout-handling');
    await sh('sudo apt-get install -y make');
    await sh(`printf '#!/bin/sh\\necho "to stdout"\\necho "to stderr" >&2\\n' | sudo tee /usr/local/bin/myapp >/dev/null && sudo chmod +x /usr/local/bin/myapp`);
  }, 180_000);

  afterAll(async () => {
    await timedOut?.catch(() => undefined);
    if (computerId) await api.del(`/computers/${computerId}`);
  });

  it('Quick Start (JavaScript): output lines, then the exit code', async () => {
    const client = pageClient(api);
    const written: string[] = [];
    const process = { stdout: { write: (s: unknown) => written.push(String(s)) } };
    const console = { log: (s: unknown) => written.push(`${String(s)}\n`) };

    for await (const event of client.exec.stream(computerId, {
      command: 'pip install requests',
      timeout: 300,
    })) {
      if (event.type === 'output') {
        process.stdout.write(event.data.line);
      } else if (event.type === 'exit') {
        console.log(`Exit code: ${event.data.exitCode}`);
        break;
      }
    }

    expect(written.join('')).toMatch(/requests/);
    expect(written.at(-1)).toBe('Exit code: 0\n');
  }, 120_000);

  it('Capture both streams separately (JavaScript)', async () => {
    const client = pageClient(api);
    const stdout: string[] = [];
    const stderr: string[] = [];

    for await (const event of client.exec.stream(computerId, { command: 'myapp 2>&1 | tee /tmp/output.log' })) {
      if (event.type === 'output') {
        if (event.data.stream === 'stdout') stdout.push(event.data.line);
        else stderr.push(event.data.line);
      } else if (event.type === 'exit') {
        break;
      }
    }

    // `2>&1` sends both to tee, so both arrive on stdout.
    expect(stdout).toEqual(['to stdout\n', 'to stderr\n']);
    expect(stderr).toEqual([]);
    const log = await api.exec(computerId, 'cat /tmp/output.log');
    expect(log.body.output).toBe('to stdout\nto stderr\n');
  });

  it('Monitor a build (Python): the build output, then "Build succeeded"; a failing build raises', async () => {
    await sh(`cd /workspace && printf 'build:\\n\\t@echo compiling main.c\\n\\t@echo linking app\\n' > Makefile`);
    const ok = await pythonRecipe(api, computerId, 'monitor-a-build');
    expect(ok).toMatchObject({ code: 0, stdout: 'compiling main.c\nlinking app\nBuild succeeded\n' });

    await sh(`cd /workspace && printf 'build:\\n\\t@echo compiling main.c\\n\\t@false\\n' > Makefile`);
    const failed = await pythonRecipe(api, computerId, 'monitor-a-build');
    expect(failed.code).not.toBe(0);
    expect(failed.stdout).toMatch(/^compiling main\.c\n/);
    expect(failed.stderr).toMatch(/RuntimeError: Build failed with exit code 2/);
  }, 60_000);

  it('Timeout handling (Python): the command is killed at its 60 s timeout and the recipe says so', async () => {
    expect(await timedOut).toMatchObject({ code: 0, stdout: 'Command killed after 60s\n' });
  }, 120_000);
});
