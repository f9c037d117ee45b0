import { describe, expect, it } from 'vitest';
import { globalIpv6, localIpv4 } from '../../host-agent/drivers/sandbox/address.ts';

const FIB = `Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 10.0.2.0/24 2 0 2
           |-- 10.0.2.0
              /24 link UNICAST
           |-- 10.0.2.15
              /32 host LOCAL
        |-- 10.0.2.255
           /32 link BROADCAST
`;

describe("a sandbox's address", () => {
  it('is the first non-loopback local IPv4 address of its namespace', () => {
    expect(localIpv4(FIB)).toBe('10.0.2.15');
    expect(localIpv4('Main:\n  |-- 127.0.0.1\n     /32 host LOCAL\n')).toBeNull();
  });

  it('falls back to a global IPv6 address, written in the usual short groups', () => {
    const rows = '00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000005 02 40 00 00     eth0\n';
    expect(globalIpv6(rows)).toBe('fd00:0:0:0:0:0:0:5');
    expect(globalIpv6('fe800000000000000000000000000001 02 40 20 80 eth0\n')).toBeNull();
  });

});
