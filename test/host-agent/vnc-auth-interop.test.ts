/**
 * The VNC authentication the ComputerObject checks viewer passwords with
 * (durable-objects/desktop/vnc-auth.ts, its own DES) is the one real VNC
 * software speaks: a client answering with it logs in to TigerVNC's Xvnc with
 * the right password and is refused with a wrong one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostVnc, type HostVnc } from '../host-vnc.ts';
import { RfbClient } from '../e2e/rfb-client.ts';

let vnc: HostVnc;
const PASSWORD = 'Hx7kQ2mZ';

beforeAll(async () => {
  vnc = await startHostVnc({ password: PASSWORD, width: 640, height: 480 });
});

afterAll(async () => {
  await vnc?.stop();
});

describe('VNC authentication against TigerVNC', () => {
  it('the right password logs in; a wrong one, or one differing in its 8th character, is refused', async () => {
    const good = await RfbClient.overTcp(vnc.port);
    expect(await good.handshake(PASSWORD)).toMatchObject({ width: 640, height: 480 });
    good.close();
    for (const wrong of ['wrong!!!', 'Hx7kQ2mY']) {
      const bad = await RfbClient.overTcp(vnc.port);
      await expect(bad.handshake(wrong)).rejects.toThrow(/Authentication failure/);
      bad.close();
    }
  });
});
