/**
 * A VM's network (passt): outbound and DNS work as on the host, apt works;
 * nothing on the host is reachable from inside — not its loopback, not
 * through the gateway, not at the VM's own address (which passt copies from
 * the host, IPv6 as well as IPv4). Root renumbering a VM to get past that is
 * in the escape suite (test/e2e/escape-kernel.test.ts, network).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { passtIpv6 } from '../../host-agent/drivers/vm/network.ts';
import { Computers, VM, newVmDriver, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let spec: ComputerSpec;
const sh = (command: string, timeout_s = 120) => shIn(driver, spec.id)(command, timeout_s);

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ ...VM, name: 'Net VM' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('network of a VM computer', () => {
  it('has an address and a default route, resolves names and fetches from the Debian mirror (apt-get update works)', async () => {
    const addr = await driver.address(spec.id);
    expect(addr && net.isIP(addr)).toBe(4);
    const ip = await sh('ip -4 -o addr show eth0 | awk \'{print $4}\' | cut -d/ -f1; ip route | grep -c "^default"');
    expect(ip.output).toBe(`${addr}\n1\n`);
    // The host's IPv6 address is the VM's own too, so its own traffic to it stays inside.
    const ip6 = passtIpv6();
    if (ip6) expect((await sh('ip -6 -o addr show dev eth0 scope global')).output).toContain(` ${ip6} `);
    const dns = await sh('getent hosts deb.debian.org');
    expect(dns.exit_code).toBe(0);
    const update = await sh('sudo -n apt-get update 2>&1 | tail -3; exit ${PIPESTATUS[0]}', 280);
    expect(update.exit_code).toBe(0);
    expect(update.output).toMatch(/Reading package lists/);
  }, 300_000);

  it('cannot reach services listening on the host', async () => {
    const server = net.createServer((c) => c.end('host-service\n'));
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const probe = (ip: string) => `timeout 3 bash -c 'cat < /dev/tcp/${ip}/${port}' 2>/dev/null || echo refused-${ip}`;
      const gw = `$(ip route | awk '/default/ {print $3}')`;
      const own = `$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)`;
      const r = await sh(`${probe('127.0.0.1')}; ${probe(gw)}; ${probe(own)}`);
      expect(r.output).not.toContain('host-service');
      expect(r.output.match(/refused-/g)).toHaveLength(3);
    } finally {
      server.close();
    }
  });
});
