/**
 * A VM's network (passt): outbound and DNS work as on the host, apt works;
 * nothing on the host is reachable from inside — not its loopback, not
 * through the gateway, not at the VM's own address (which passt copies from
 * the host, IPv6 as well as IPv4). Root renumbering a VM to get past that is
 * in the escape suite (test/e2e/escape-kernel.test.ts, network).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { passtIpv6 } from '../../host-agent/drivers/vm/network.ts';
import { readState } from '../../host-agent/drivers/vm/qemu.ts';
import { Computers, VM, newVmDriver, pathsOf, prepareVms, shIn } from './vm-fixture.ts';

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

  // passt drops the rest of a frame a short write left, and QEMU then ends the VM's network
  // ("oversized packet received"); a wide send buffer on passt's end keeps writes whole
  // (network.ts, PASST_SEND_BUFFER). The server runs in passt's own namespace, at an address
  // added there for it, so the bytes come from no outside network, as fast as passt takes them.
  it('takes large downloads one after another, the network still up after them', async () => {
    const paths = pathsOf(driver, spec.id);
    const passtPid = readState(paths)!.passt_pid!;
    const inNamespace = ['--net=/proc/' + passtPid + '/ns/net'];
    const addr = '198.51.100.7';
    await run('nsenter', [...inNamespace, 'ip', 'addr', 'add', `${addr}/32`, 'dev', 'lo']);
    const bytes = 16 << 20;
    const server = spawn('nsenter', [...inNamespace, process.execPath, '-e', `
      const chunk = Buffer.alloc(1 << 20, 120);
      require('node:http').createServer(async (req, res) => {
        res.writeHead(200, { 'content-length': ${bytes} });
        for (let i = 0; i < ${bytes >> 20}; i++) if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
        res.end();
      }).listen(8080, '${addr}', () => console.log('listening'));
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) => reject(new Error(`the server in the namespace exited (${code})`)));
      });
      const got = await sh(`for i in 1 2 3 4; do curl -s -o /dev/null -m 60 -w '%{size_download}\\n' http://${addr}:8080/; done`, 300);
      expect(got.output).toBe(`${bytes}\n`.repeat(4));
      expect(fs.readFileSync(paths.qemuLog, 'utf8')).not.toMatch(/oversized packet/);
    } finally {
      server.kill('SIGKILL');
    }
  }, 400_000);
});

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'inherit' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}
