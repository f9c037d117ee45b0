import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, SHARES, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;

const sh = (command: string, timeout_s = 60) => driver.exec(spec.id, { command, timeout_s, max_output_bytes: 1 << 20 });

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Net Box' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('network and package managers inside a computer', () => {
  it('resolves names and fetches from the Debian mirror (apt-get update works)', async () => {
    const dns = await sh('getent hosts deb.debian.org');
    expect(dns.exit_code).toBe(0);
    expect(dns.output).toMatch(/deb\.debian\.org/);
    const update = await sh('sudo -n apt-get update 2>&1 | tail -3; exit ${PIPESTATUS[0]}', 180);
    expect(update.exit_code).toBe(0);
    expect(update.output).toMatch(/Reading package lists/);
  });

  it('cannot reach services listening on the host', async () => {
    // The host agent and other computers' relays listen on the host; pasta must not lead there.
    const server = net.createServer((c) => c.end('host-service\n'));
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const probe = (ip: string) => `timeout 2 bash -c 'cat < /dev/tcp/${ip}/${port}' 2>/dev/null || echo refused-${ip}`;
      const gw = `$(ip route | awk '/default/ {print $3}')`;
      const own = `$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)`;
      const r = await sh(`${probe('127.0.0.1')}; ${probe(gw)}; ${probe(own)}`);
      expect(r.output).not.toContain('host-service');
      expect(r.output.match(/refused-/g)).toHaveLength(3);
    } finally {
      server.close();
    }
  });

  it.runIf(SHARES.length > 0)('pip install works for user through the shared local index', async () => {
    // Slow here because pip retries the unreachable pypi.org before the local index, exactly as on the host.
    const r = await sh('pip install --user requests >/tmp/pip.log 2>&1; echo pip=$?; python3 -c "import requests; print(requests.__name__)"', 280);
    expect(r.output).toBe('pip=0\nrequests\n');
  }, 300_000);

  it('the shared mirror is read-only inside', async () => {
    const r = await sh(`sudo -n touch ${SHARES[0] ?? '/opt/pypi'}/x 2>&1; echo rc=$?`);
    expect(r.output).toMatch(/Read-only file system|No such file/);
  });
});
