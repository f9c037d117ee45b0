import { describe, expect, it } from 'vitest';
import { desEncrypt } from '../../durable-objects/desktop/des.ts';
import { vncAuthMatches, vncAuthResponse } from '../../durable-objects/desktop/vnc-auth.ts';
import { NoneClientHandshake, PasswordServerHandshake, RFB_38 } from '../../durable-objects/desktop/rfb-handshake.ts';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

describe('DES for VNC authentication', () => {
  // Known answers: the textbook example, and blocks OpenSSL's legacy DES (des-ecb) encrypted.
  it.each([
    ['133457799bbcdff1', '0123456789abcdef', '85e813540f0ab405'],
    ['0000000000000000', '0000000000000000', '8ca64de9c1b123a7'],
    ['ffffffffffffffff', 'ffffffffffffffff', '7359b2163e4edc58'],
    ['0123456789abcdef', '4e6f772069732074', '3fa40e8a984d4815'],
  ])('key %s encrypts %s to %s', (key, plain, cipher) => {
    expect(toHex(desEncrypt(hex(key), hex(plain)))).toBe(cipher);
  });

  it('a VNC client\'s answer matches only under the same password (first 8 characters count)', () => {
    const challenge = hex('00112233445566778899aabbccddeeff');
    const answer = vncAuthResponse('s3cret!!', challenge);
    expect(vncAuthMatches('s3cret!!', challenge, answer)).toBe(true);
    expect(vncAuthMatches('s3cret!!-and-more', challenge, answer)).toBe(true);
    expect(vncAuthMatches('s3cret!?', challenge, answer)).toBe(false);
    expect(vncAuthMatches('s3cret!!', challenge, answer.subarray(0, 15))).toBe(false);
  });
});

describe('the RFB openings the object speaks', () => {
  const challenge = new Uint8Array(16).fill(7);
  const enc = (s: string) => new TextEncoder().encode(s);

  it('as the server: offers VNC authentication, checks the answer, keeps what the client sent after it', () => {
    const server = new PasswordServerHandshake(challenge, (r) => vncAuthMatches('pw', challenge, r));
    expect(server.greeting()).toEqual(RFB_38);
    expect(server.feed(enc('RFB 003.008\n')).send).toEqual(Uint8Array.of(1, 2));
    expect(server.feed(Uint8Array.of(2)).send).toEqual(challenge);
    const ok = server.feed(new Uint8Array([...vncAuthResponse('pw', challenge), 1]));
    expect(ok.outcome).toEqual({ ok: true, rest: Uint8Array.of(1) });
  });

  it('as the server: a wrong answer is refused with a reason (3.8), and a 3.3 client is sent the type directly', () => {
    const server = new PasswordServerHandshake(challenge, () => false);
    server.feed(enc('RFB 003.008\n'));
    server.feed(Uint8Array.of(2));
    const no = server.feed(new Uint8Array(16));
    expect(no.outcome).toEqual({ ok: false, reason: 'wrong viewer password' });
    expect(new TextDecoder().decode(no.send!.subarray(8))).toBe('wrong viewer password');
    const old = new PasswordServerHandshake(challenge, () => true);
    const step = old.feed(enc('RFB 003.003\n'));
    expect(step.send).toEqual(new Uint8Array([0, 0, 0, 2, ...challenge]));
  });

  it('as the client of Xvnc: picks None and passes on what follows the result', () => {
    const client = new NoneClientHandshake();
    expect(client.feed(enc('RFB 003.008\n')).send).toEqual(RFB_38);
    expect(client.feed(Uint8Array.of(2, 1, 2)).send).toEqual(Uint8Array.of(1));
    expect(client.feed(Uint8Array.of(0, 0, 0, 0, 9, 9)).outcome).toEqual({ ok: true, rest: Uint8Array.of(9, 9) });
    const locked = new NoneClientHandshake();
    locked.feed(enc('RFB 003.008\n'));
    expect(locked.feed(Uint8Array.of(1, 2)).outcome).toEqual({ ok: false, reason: "the desktop's VNC server asks for a password of its own" });
  });
});
