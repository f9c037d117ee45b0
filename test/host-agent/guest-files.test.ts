/**
 * File operations in a real sandbox, through the driver and the guest (op fs):
 * done as `user`, as root only where `user` is refused, with lstat semantics,
 * and errors that say what the path is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec, ExecRunParams } from '../../schema/protocol.ts';
import type { FsListing, FsRequest, FsStat } from '../../schema/guest.ts';
import { DriverError } from '../../host-agent/drivers/driver.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;

const run = async (command: string, extra: Partial<ExecRunParams> = {}) =>
  (await driver.exec(spec.id, { command, timeout_s: 60, max_output_bytes: 1 << 20, ...extra })).output;
const fs = (request: FsRequest) => driver.fs(spec.id, request);
const stat = async (path: string) => (await fs({ op: 'stat', path })) as FsStat;

/** The DriverError code a file operation fails with. */
async function failure(request: FsRequest): Promise<string> {
  try {
    await fs(request);
  } catch (err) {
    // What the computer's guest said (the agent keeps it for its log; clients get the API's words).
    if (err instanceof DriverError) return `${err.code}: ${err.detail ?? err.message}`;
    throw err;
  }
  throw new Error(`${JSON.stringify(request)} succeeded`);
}

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Files Box' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('file operations in a computer', () => {
  it('mkdir (parents too), chmod and stat: owned by user, the mode with its file-type bits', async () => {
    const made = (await fs({ op: 'mkdir', path: '/workspace/a/b/c', recursive: true, mode: 0o750 })) as FsStat;
    expect(made).toMatchObject({ path: '/workspace/a/b/c', is_dir: true, is_symlink: false, mode: 0o40750, uid: 1000, gid: 1000 });
    // Again: a directory that exists is fine when recursive.
    await fs({ op: 'mkdir', path: '/workspace/a/b/c', recursive: true, mode: 0o750 });
    expect(await failure({ op: 'mkdir', path: '/workspace/a/b/c', recursive: false, mode: 0o755 })).toMatch(/^CONFLICT: /);
    expect(await failure({ op: 'mkdir', path: '/workspace/x/y', recursive: false, mode: 0o755 })).toMatch(/^NO_SUCH_PATH: .*\/workspace\/x\/y/);
    await run('echo hi > /workspace/a/file.txt');
    expect(((await fs({ op: 'chmod', path: '/workspace/a/file.txt', mode: 0o4711 })) as FsStat).mode).toBe(0o104711);
    expect(await run('stat -c %a /workspace/a/file.txt')).toBe('4711\n');
    expect(await failure({ op: 'mkdir', path: '/workspace/a/file.txt/sub', recursive: true, mode: 0o755 })).toMatch(/^CONFLICT: /);
  });

  it('stat is lstat: a symlink shows as one, with its target', async () => {
    await run('ln -sfn /etc /workspace/to-etc; ln -sfn /nowhere /workspace/dangling');
    expect(await stat('/workspace/to-etc')).toMatchObject({ is_symlink: true, is_dir: false, symlink_target: '/etc' });
    expect((await stat('/workspace/to-etc')).mode & 0o170000).toBe(0o120000);
    expect(await stat('/workspace/dangling')).toMatchObject({ is_symlink: true, symlink_target: '/nowhere' });
    expect(await failure({ op: 'stat', path: '/workspace/missing' })).toMatch(/^NO_SUCH_PATH: /);
  });

  it('lists sorted by name; a symlink to a directory counts as a directory; relative paths and ~ are from the home', async () => {
    await run('mkdir -p /workspace/ls && cd /workspace/ls && mkdir zdir && printf 12345 > b.txt && ln -s zdir alink && ln -s nowhere broken');
    const listing = (await fs({ op: 'list', path: '/workspace/ls' })) as FsListing;
    expect(listing.truncated).toBe(false);
    expect(listing.entries.map((e) => [e.name, e.path, e.is_dir, e.is_symlink])).toEqual([
      ['alink', '/workspace/ls/alink', true, true],
      ['b.txt', '/workspace/ls/b.txt', false, false],
      ['broken', '/workspace/ls/broken', false, true],
      ['zdir', '/workspace/ls/zdir', true, false],
    ]);
    expect(listing.entries[1].size).toBe(5);
    await run('echo x > ~/in-home.txt');
    expect((await stat('in-home.txt')).path).toBe('/home/user/in-home.txt');
    expect((await stat('~/in-home.txt')).path).toBe('/home/user/in-home.txt');
    expect(await failure({ op: 'list', path: '/workspace/ls/b.txt' })).toMatch(/^CONFLICT: /);
  });

  it('a long listing comes in pages that fit one message; `after` continues where one stopped', async () => {
    await run(`mkdir -p /workspace/many && python3 -c "[open('/workspace/many/file-%04d-%s' % (i, 'x' * 150), 'w').close() for i in range(3000)]"`);
    const names: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const page = (await fs({ op: 'list', path: '/workspace/many', ...(after && { after }) })) as FsListing;
      expect(JSON.stringify(page).length).toBeLessThan(1024 * 1024);
      names.push(...page.entries.map((e) => e.name));
      pages++;
      if (!page.truncated) break;
      after = page.entries.at(-1)!.name;
    }
    expect(pages).toBeGreaterThan(1);
    expect(names).toHaveLength(3000);
    expect(names).toEqual([...names].sort());
  });

  it('rename creates the parent of the target; copy copies files and, when asked, trees', async () => {
    await run('mkdir -p /workspace/src/inner && echo one > /workspace/src/inner/f && ln -s inner/f /workspace/src/link');
    expect(await fs({ op: 'rename', from: '/workspace/src', to: '/workspace/new/parent/dst' })).toMatchObject({ path: '/workspace/new/parent/dst', is_dir: true, uid: 1000 });
    expect(await run('cat /workspace/new/parent/dst/inner/f; test -e /workspace/src || echo gone')).toBe('one\ngone\n');
    expect(await failure({ op: 'copy', from: '/workspace/new/parent/dst', to: '/workspace/copy', recursive: false })).toMatch(/^CONFLICT: /);
    await fs({ op: 'copy', from: '/workspace/new/parent/dst', to: '/workspace/copy', recursive: true });
    expect(await run('cat /workspace/copy/inner/f; readlink /workspace/copy/link')).toBe('one\ninner/f\n');
    await fs({ op: 'copy', from: '/workspace/copy/inner/f', to: '/workspace/copies/f2', recursive: false });
    expect(await run('cat /workspace/copies/f2; stat -c %U /workspace/copies/f2')).toBe('one\nuser\n');
    expect(await failure({ op: 'copy', from: '/workspace/copy', to: '/workspace/copy/inside', recursive: true })).toMatch(/^BAD_REQUEST: .*into itself/);
    expect(await failure({ op: 'rename', from: '/workspace/nope', to: '/workspace/y' })).toMatch(/^NO_SUCH_PATH: /);
  });

  it('delete removes files and whole trees; without recursive a full directory is a conflict', async () => {
    await run('mkdir -p /workspace/del/a/b && touch /workspace/del/a/b/c /workspace/del/f');
    expect(await failure({ op: 'delete', path: '/workspace/del', recursive: false })).toMatch(/^CONFLICT: /);
    expect(await fs({ op: 'delete', path: '/workspace/del/f', recursive: false })).toEqual({ path: '/workspace/del/f', deleted: true });
    await fs({ op: 'delete', path: '/workspace/del', recursive: true });
    expect(await run('test -e /workspace/del || echo gone')).toBe('gone\n');
    expect(await failure({ op: 'delete', path: '/workspace/del', recursive: true })).toMatch(/^NO_SUCH_PATH: /);
    expect(await failure({ op: 'delete', path: '/', recursive: true })).toMatch(/^FORBIDDEN: /);
  });

  it("where user is refused the work is done as root, and what it makes belongs to root; what even root may not touch is forbidden", async () => {
    const made = (await fs({ op: 'mkdir', path: '/etc/hangar-test-dir', recursive: true, mode: 0o755 })) as FsStat;
    expect([made.uid, made.gid]).toEqual([0, 0]);
    expect(await stat('/root')).toMatchObject({ is_dir: true, uid: 0 });
    await fs({ op: 'copy', from: '/etc/hostname', to: '/workspace/hostname-copy', recursive: false });
    expect(await run('stat -c %U /workspace/hostname-copy')).toBe('user\n');
    expect(await failure({ op: 'chmod', path: '/proc/sys/kernel/hostname', mode: 0o644 })).toMatch(/^FORBIDDEN: /);
    expect(await failure({ op: 'mkdir', path: '/sys/hangar-test', recursive: true, mode: 0o755 })).toMatch(/^FORBIDDEN: /);
  });

  it('refuses paths that cannot be paths', async () => {
    for (const path of ['', 'a\0b', '/'.repeat(5000)]) {
      expect(await failure({ op: 'stat', path })).toMatch(/^BAD_REQUEST: /);
    }
  });
});
