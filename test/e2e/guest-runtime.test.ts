/**
 * The guest agent runs on a runtime of its own, on a read-only mount: what a
 * user removes from the computer's own system (its Python above all) cannot
 * cut the computer off from the API, now or after a reboot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { Streams, stdoutOf } from './exec-streams.ts';

let api: Client;
let id: string;

beforeAll(async () => {
  api = await newTenant('runtime');
  id = await api.runningComputer('no-python');
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

describe("the guest's own runtime", () => {
  // In a sandbox the guest is pid 1; in a VM pid 1 is the boot image's init, and the guest its child.
  it('is read-only even for root inside, and the guest agent runs from it', async () => {
    const r = await api.exec(id, 'sudo -n touch /run/hangar-guest/x; echo "touch=$?"; sudo -n mount -o remount,rw /run/hangar-guest; echo "mount=$?"; P=$(pgrep -o -x hangar-guest); ps -o comm= -p "$P"; sudo -n readlink "/proc/$P/exe"');
    expect(r.body.output).toMatch(/touch=1\n/);
    expect(r.body.output).toMatch(/mount=(1|32)\n/);
    expect(r.body.output).toMatch(/\nhangar-guest\n\/run\/hangar-guest\/lib\/ld-linux[^\n]*\n$/);
  });

  it("survives `apt-get remove python3` and deleting /usr/lib/python3*: exec answers, and again after a stop and start", async () => {
    const removed = await api.exec(
      id,
      'sudo -n apt-get remove -y python3 >/tmp/remove.log 2>&1; echo "apt=$?"; sudo -n rm -rf /usr/lib/python3* /usr/bin/python3*; command -v python3 || echo no-python',
      300,
    );
    expect(removed.body.output).toBe('apt=0\nno-python\n');
    expect((await api.exec(id, 'ls /usr/lib | grep -c "^python3" || true')).body.output).toBe('0\n');

    expect((await api.post(`/computers/${id}/stop`)).body.status).toBe('stopped');
    expect((await api.post(`/computers/${id}/start`)).body.status).toBe('running');
    const after = await api.exec(id, 'echo back; whoami; command -v python3 || echo still-no-python');
    expect(after.body).toMatchObject({ exit_code: 0, output: 'back\nuser\nstill-no-python\n' });
    // Streamed commands (and terminals, through the same guest calls) work too.
    const streams = new Streams(api, id);
    expect(stdoutOf(await streams.all(await streams.start('echo streamed')))).toContain('streamed');
  });
});
