import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec, ExecRunParams } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;

const run = (command: string, extra: Partial<ExecRunParams> = {}) =>
  driver.exec(spec.id, { command, timeout_s: 30, max_output_bytes: 1 << 20, ...extra });

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Exec Box', env: { GREETING: 'hello from spec' } });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('exec in a sandbox', () => {
  it('runs python and returns its output with exit code 0', async () => {
    const r = await run(`python3 -c 'print(2+2)'`);
    expect(r).toMatchObject({ output: '4\n', exit_code: 0, timed_out: false, truncated: false });
  });

  it('keeps stdout and stderr interleaved in the order they were written', async () => {
    const r = await run('for i in 1 2 3; do echo out$i; echo err$i >&2; done');
    expect(r.output).toBe('out1\nerr1\nout2\nerr2\nout3\nerr3\n');
  });

  it('returns the exit code of the command', async () => {
    expect((await run('exit 7')).exit_code).toBe(7);
    expect((await run('false')).exit_code).toBe(1);
    expect((await run('kill -9 $$')).exit_code).toBe(137);
  });

  it('times out with 124, keeps the output so far and kills the whole process group', async () => {
    const marker = `bg-${randomUUID()}`;
    const r = await run(`echo before; (exec -a ${marker} sleep 300) & sleep 300; echo never`, { timeout_s: 1 });
    expect(r.exit_code).toBe(124);
    expect(r.timed_out).toBe(true);
    expect(r.output).toBe('before\n');
    expect(r.duration_ms).toBeGreaterThanOrEqual(1000);
    // The background child got SIGTERM with its group; give the SIGKILL grace a moment in case.
    let left = '';
    for (let i = 0; i < 30; i++) {
      // b[g]: the pattern must not match the command line of the shell running pgrep.
      left = (await run(`pgrep -f 'b[g]-${marker.slice(3)}' || true`)).output;
      if (!left) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(left).toBe('');
  });

  it('drops output past max_output_bytes, flags it, and does not block the writer', async () => {
    const r = await run('head -c 5000000 /dev/zero | tr "\\0" x; echo; echo done >&2', { max_output_bytes: 1000 });
    expect(r.truncated).toBe(true);
    expect(r.output).toBe('x'.repeat(1000));
    expect(r.exit_code).toBe(0);
  });

  it('decodes invalid UTF-8 with replacement characters', async () => {
    const r = await run(`printf 'ok \\377\\n'`);
    expect(r.output).toBe('ok \uFFFD\n');
  });

  it('runs as user in /workspace with a home, and sudo works without a password', async () => {
    const r = await run('id -u; id -gn; id -Gn; pwd; echo $HOME; sudo -n true && echo sudo-ok; sudo -n id -u');
    expect(r.output).toBe('1000\nuser\nuser sudo\n/workspace\n/home/user\nsudo-ok\n0\n');
  });

  it('runs every process under the seccomp filter, which answers a refused call with EPERM and lets the process go on', async () => {
    const r = await run(
      `grep Seccomp: /proc/1/status /proc/self/status | sed 's/.*://' | tr -d '\\t' | sort -u; python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); print(l.syscall(250, 0, 0), ctypes.get_errno(), "still running")'`,
    );
    expect(r.output).toBe('2\n-1 1 still running\n'); // mode 2 = filter; keyctl: -1, EPERM
  });

  it('gives root inside no more capabilities than Docker does', async () => {
    const r = await run('sudo -n grep CapBnd /proc/self/status; sudo -n mount -t tmpfs none /mnt; echo mount=$?');
    // 0xa80425fb is Docker's default set: no SYS_ADMIN, DAC_READ_SEARCH, SYS_MODULE, SYS_PTRACE...
    expect(r.output).toContain('CapBnd:\t00000000a80425fb');
    expect(r.output).toContain('mount=32');
  });

  it('cannot see files of the host', async () => {
    const marker = `hangar-marker-${randomUUID()}`;
    fs.writeFileSync(`/root/${marker}`, 'secret');
    fs.writeFileSync(`/tmp/${marker}`, 'secret');
    try {
      const r = await run(`sudo -n ls -a /root /tmp; sudo -n find / -xdev -name '${marker}*' 2>/dev/null | head -5; echo end`);
      expect(r.output).not.toContain(marker);
      expect(r.output).toContain('end');
    } finally {
      fs.rmSync(`/root/${marker}`, { force: true });
      fs.rmSync(`/tmp/${marker}`, { force: true });
    }
  });

  it('sees only its own processes', async () => {
    const r = await run('ps -e -o pid=,comm=');
    const lines = r.output.trim().split('\n').map((l) => l.trim());
    expect(lines[0]).toMatch(/^1 hangar-guest$/);
    expect(lines.length).toBeLessThanOrEqual(4); // the guest, bash, ps
    expect(r.output).not.toMatch(/node|vitest|systemd|sshd/);
  });

  it('has the hostname of the computer name', async () => {
    expect((await run('hostname')).output).toBe('exec-box\n');
  });

  it('injects the spec env, request env on top, and setEnv replaces it for new processes', async () => {
    expect((await run('echo "$GREETING"')).output).toBe('hello from spec\n');
    expect((await run('echo "$GREETING/$EXTRA"', { env: { EXTRA: 'x' } })).output).toBe('hello from spec/x\n');
    await driver.setEnv(spec.id, { GREETING: 'replaced' });
    expect((await run('echo "$GREETING"')).output).toBe('replaced\n');
  });

  it("puts ~/.local/bin first on PATH, where pip installs user scripts", async () => {
    const r = await run('echo $PATH');
    expect(r.output.split(':')[0]).toBe('/home/user/.local/bin');
  });

  it('answers many concurrent execs on one connection', async () => {
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => run(`echo ${i}`)));
    expect(results.map((r) => r.output)).toEqual(Array.from({ length: 32 }, (_, i) => `${i}\n`));
  });
});
