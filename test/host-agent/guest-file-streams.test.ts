/**
 * A file's bytes through a real computer's guest (op file_open, the relay's
 * `computer_file` target): reads with offsets, writes replaced only when whole,
 * directories packed as tar.gz, archives unpacked only when safe and whole.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { FileStream } from '../../schema/guest.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;
let tmp: string;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const run = async (command: string) => (await driver.exec(spec.id, { command, timeout_s: 120, max_output_bytes: 1 << 20 })).output;

/** Sends `body` (then FIN) and collects what comes back until the stream ends; rejects when it ends with an error. */
function exchange(stream: Duplex, body?: Uint8Array | Uint8Array[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    stream.on('data', (c: Buffer) => got.push(c));
    stream.on('end', () => resolve(Buffer.concat(got)));
    stream.on('error', reject);
    for (const part of body === undefined ? [] : Array.isArray(body) ? body : [body]) stream.write(part);
    stream.end();
  });
}

const open = (request: FileStream) => driver.openFile(spec.id, request);
const answer = (b: Buffer) => JSON.parse(b.toString()) as Record<string, unknown>;

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Stream Files Box' });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'file-streams-'));
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('file streams through the guest', () => {
  it('writes binary bytes exactly, as user, and reads them back whole and by range', async () => {
    const data = randomBytes(20 * 1024 * 1024 + 123);
    const parts = Array.from({ length: 21 }, (_, i) => data.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    const written = answer(await exchange(await open({ op: 'write', path: '/workspace/up/bin.dat' }), parts));
    expect(written).toEqual({ ok: true, path: '/workspace/up/bin.dat', size: data.length });
    expect(await run('sha256sum /workspace/up/bin.dat | cut -d" " -f1; stat -c "%U %a" /workspace/up/bin.dat')).toBe(`${sha(data)}\nuser 644\n`);
    const whole = await exchange(await open({ op: 'read', path: '/workspace/up/bin.dat', offset: 0 }));
    expect(sha(whole)).toBe(sha(data));
    const range = await exchange(await open({ op: 'read', path: '/workspace/up/bin.dat', offset: 1000, length: 5000 }));
    expect(sha(range)).toBe(sha(data.subarray(1000, 6000)));
  });

  it('a write the host breaks off changes nothing; a finished one replaces the old file, keeping its mode', async () => {
    await run('printf old > /workspace/keep.txt && chmod 600 /workspace/keep.txt');
    const cut = await open({ op: 'write', path: '/workspace/keep.txt' });
    cut.on('error', () => {});
    cut.write(Buffer.from('half of the new content'));
    await new Promise((r) => setTimeout(r, 200));
    cut.destroy(new Error('the client went away'));
    await new Promise((r) => setTimeout(r, 500));
    expect(await run('cat /workspace/keep.txt; ls -a /workspace | grep -c hangar || true')).toBe('old0\n');
    expect(answer(await exchange(await open({ op: 'write', path: '/workspace/keep.txt' }), Buffer.from('new')))).toMatchObject({ ok: true, size: 3 });
    expect(await run('cat /workspace/keep.txt; stat -c " %a" /workspace/keep.txt')).toBe('new 600\n');
  });

  it('a write where a directory is answers CONFLICT in its JSON line; a read of a missing file ends with an error', async () => {
    await run('mkdir -p /workspace/adir');
    const r = answer(await exchange(await open({ op: 'write', path: '/workspace/adir' }), Buffer.from('x')));
    expect(r).toMatchObject({ ok: false, code: 'CONFLICT' });
    await expect(exchange(await open({ op: 'read', path: '/workspace/missing', offset: 0 }))).rejects.toThrow(/No such file or directory/);
  });

  it('packs a directory as tar.gz with its tree intact', async () => {
    await run('mkdir -p /workspace/tree/sub && printf one > /workspace/tree/a && printf two > /workspace/tree/sub/b && ln -s a /workspace/tree/link');
    const tgz = await exchange(await open({ op: 'pack', path: '/workspace/tree' }));
    fs.writeFileSync(path.join(tmp, 'tree.tgz'), tgz);
    const listing = execFileSync('tar', ['-tzvf', path.join(tmp, 'tree.tgz')]).toString();
    expect(listing).toMatch(/tree\/sub\/b/);
    expect(listing).toMatch(/tree\/link -> a/);
    execFileSync('tar', ['-xzf', path.join(tmp, 'tree.tgz'), '-C', tmp]);
    expect(fs.readFileSync(path.join(tmp, 'tree/sub/b'), 'utf8')).toBe('two');
  });

  it('unpacks tar.gz and zip archives into a directory, merging with what is there', async () => {
    fs.mkdirSync(path.join(tmp, 'src/dir'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'src/top.txt'), 'top');
    fs.writeFileSync(path.join(tmp, 'src/dir/deep.bin'), randomBytes(300_000));
    execFileSync('tar', ['-czf', path.join(tmp, 'a.tgz'), '-C', path.join(tmp, 'src'), '.']);
    await run('mkdir -p /workspace/dest && printf stays > /workspace/dest/existing');
    const r = answer(await exchange(await open({ op: 'unpack', path: '/workspace/dest', format: 'auto' }), fs.readFileSync(path.join(tmp, 'a.tgz'))));
    expect(r).toMatchObject({ ok: true, path: '/workspace/dest' });
    const deep = sha(fs.readFileSync(path.join(tmp, 'src/dir/deep.bin')));
    expect(await run('cat /workspace/dest/top.txt /workspace/dest/existing; echo; sha256sum /workspace/dest/dir/deep.bin | cut -d" " -f1; stat -c %U /workspace/dest/top.txt')).toBe(`topstays\n${deep}\nuser\n`);
    execFileSync('python3', ['-c', `import zipfile; z = zipfile.ZipFile('${path.join(tmp, 'b.zip')}', 'w'); z.writestr('z/hello.txt', 'from zip'); z.close()`]);
    const z = answer(await exchange(await open({ op: 'unpack', path: '/workspace/dest', format: 'auto' }), fs.readFileSync(path.join(tmp, 'b.zip'))));
    expect(z).toMatchObject({ ok: true });
    expect(await run('cat /workspace/dest/z/hello.txt')).toBe('from zip');
  });

  it('refuses an archive that reaches out of its directory, and unpacks nothing of it', async () => {
    execFileSync('python3', [
      '-c',
      `import tarfile, io
t = tarfile.open('${path.join(tmp, 'evil.tar')}', 'w')
for name in ['fine.txt', '../escaped.txt']:
    data = b'x'
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
t.close()`,
    ]);
    await run('mkdir -p /workspace/safe');
    const r = answer(await exchange(await open({ op: 'unpack', path: '/workspace/safe', format: 'tar' }), fs.readFileSync(path.join(tmp, 'evil.tar'))));
    expect(r).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
    expect(String(r.message)).toMatch(/goes out of the directory/);
    expect(await run('ls -A /workspace/safe; test -e /workspace/escaped.txt && echo escaped || echo ok')).toBe('ok\n');
    const junk = answer(await exchange(await open({ op: 'unpack', path: '/workspace/safe', format: 'auto' }), randomBytes(5000)));
    expect(junk).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
  });
});
