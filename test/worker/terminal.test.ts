import { env } from 'cloudflare:test';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { runningComputer, stoppedComputer, world } from './computer-fixtures.ts';
import { upgrade } from './ws-client.ts';
import { attach, createTerminal, pathOf, terminalSession } from './terminal-fixtures.ts';

useAgentPeers();

describe('POST /computers/:id/terminal', () => {
  it('answers 201 {data:{session_id, ws_url, stream_auth, expires_at, computer_id}} and starts a login shell on an 80x24 PTY', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const before = Math.floor(Date.now() / 1000);
    const { data, start } = await createTerminal(w, computer.id, peer);
    expect(Object.keys(data).sort()).toEqual(['computer_id', 'expires_at', 'session_id', 'stream_auth', 'ws_url']);
    expect(data.computer_id).toBe(computer.id);
    expect(data.ws_url).toBe(`wss://api.test/api/v1/computers/${computer.id}/terminal/${data.session_id}/ws?auth=${encodeURIComponent(data.stream_auth)}`);
    expect(data.expires_at).toBeGreaterThanOrEqual(before + 290);
    expect(data.expires_at).toBeLessThanOrEqual(before + 310);
    expect(start.params).toEqual({
      proc_id: data.session_id,
      argv: ['/bin/bash', '-l'],
      shell: '/bin/bash',
      tty: { rows: 24, cols: 80 },
      env: { TERM: 'xterm-256color' },
      stdin: true,
    });
  });

  it('takes cols, rows and shell', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const { start } = await createTerminal(w, computer.id, peer, { cols: 132, rows: 43, shell: '/usr/bin/zsh' });
    expect(start.params.argv).toEqual(['/usr/bin/zsh', '-l']);
    expect(start.params.tty).toEqual({ rows: 43, cols: 132 });
  });

  it('is a 400 for sizes outside 1–1000 or not integers, and for a shell that is not an absolute path; nothing starts', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    for (const body of [{ cols: 0 }, { rows: 1001 }, { cols: 80.5 }, { rows: '24' }, { shell: 'bash' }, { shell: '/bin/bash; rm -rf /' }]) {
      await expectError(await w.api(`/${computer.id}/terminal`, { method: 'POST', body }), 400, 'VALIDATION_FAILED');
    }
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
  });

  it('is a 409 on a stopped computer, a 502 with its agent away, and a 404 for another tenant', async () => {
    const w = await world();
    const stopped = await stoppedComputer(w);
    await expectError(await w.api(`/${stopped.computer.id}/terminal`, { method: 'POST', body: {} }), 409, 'COMPUTER_NOT_RUNNING');
    const { computer, peer } = await runningComputer(w);
    const other = await createTenant();
    await expectError(await tenantFetch(other.apiKey, `/api/v1/computers/${computer.id}/terminal`, { method: 'POST', body: {} }), 404, 'NOT_FOUND');
    await peer.drop();
    await expectError(await w.api(`/${computer.id}/terminal`, { method: 'POST', body: {} }), 502, 'AGENT_UNAVAILABLE');
  });
});

describe('terminal socket: who may attach', () => {
  it('attaches with the ws_url, with a fresh stream token, and with the API key itself', async () => {
    const { w, computer, session } = await terminalSession();
    const first = await attach(session.ws_url);
    expect(first.res.status).toBe(101);
    const fresh = await expectJson<{ token: string }>(await w.api(`/${computer.id}/stream-token`, { method: 'POST' }), 200);
    await attach(`wss://api.test/api/v1/computers/${computer.id}/terminal/${session.session_id}/ws?auth=${fresh.token}`);
    const res = await upgrade(`/api/v1/computers/${computer.id}/terminal/${session.session_id}/ws`, { authorization: `Bearer ${w.tenant.apiKey}` });
    expect(res.status).toBe(101);
  });

  it('a bad, expired or other-computer stream token is a 401 envelope before the upgrade', async () => {
    const { w, computer, peer, session } = await terminalSession();
    const path = (token: string) => `/api/v1/computers/${computer.id}/terminal/${session.session_id}/ws?auth=${encodeURIComponent(token)}`;
    const expired = await new SignJWT({ org_id: w.tenant.orgId })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(env.JWT_ISSUER)
      .setAudience('hangar-stream')
      .setSubject(computer.id)
      .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(env.JWT_SECRET));
    const { computer: second } = await runningComputer(w, { name: 'second' });
    const otherComputer = await expectJson<{ token: string }>(await w.api(`/${second.id}/stream-token`, { method: 'POST' }), 200);
    for (const token of ['garbage', expired, otherComputer.token, session.stream_auth.slice(0, -2)]) {
      const res = await upgrade(path(token));
      expect(res.webSocket, token).toBeNull();
      await expectError(res, 401, 'UNAUTHORIZED');
    }
    await expectError(await upgrade(`/api/v1/computers/${computer.id}/terminal/${session.session_id}/ws`), 401, 'UNAUTHORIZED');
    void peer;
  });

  it('an unknown session is a 404, and so is another tenant', async () => {
    const { session, computer } = await terminalSession();
    await expectError(await upgrade(pathOf(session.ws_url).replace(session.session_id, 'a0a0a0a0a0a0a0a0a0a0')), 404, 'NOT_FOUND');
    await expectError(await upgrade(pathOf(session.ws_url).replace(session.session_id, 'Not-An-Id')), 404, 'NOT_FOUND');
    const other = await createTenant();
    const res = await upgrade(`/api/v1/computers/${computer.id}/terminal/${session.session_id}/ws`, { authorization: `Bearer ${other.apiKey}` });
    expect(res.webSocket).toBeNull();
    await expectError(res, 404, 'NOT_FOUND');
    const resize = await tenantFetch(other.apiKey, `/api/v1/computers/${computer.id}/pty/${session.session_id}/resize`, { method: 'POST', body: { cols: 100, rows: 30 } });
    await expectError(resize, 404, 'NOT_FOUND');
  });

  it('a session of another computer of the same tenant is not found through this computer', async () => {
    const { w, session } = await terminalSession();
    const { computer: second } = await runningComputer(w, { name: 'second' });
    const res = await upgrade(`/api/v1/computers/${second.id}/terminal/${session.session_id}/ws`, { authorization: `Bearer ${w.tenant.apiKey}` });
    await expectError(res, 404, 'NOT_FOUND');
  });
});

describe('POST /computers/:id/pty/:session_id/resize', () => {
  it('answers {status:"ok"} and resizes the PTY through proc.resize', async () => {
    const { w, computer, peer, sid } = await terminalSession();
    const res = await expectJson(await w.api(`/${computer.id}/pty/${sid}/resize`, { method: 'POST', body: { cols: 120, rows: 40 } }), 200);
    expect(res).toEqual({ status: 'ok' });
    expect(await peer.take('proc.resize')).toMatchObject({ proc_id: sid, cols: 120, rows: 40 });
  });

  it('a JSON resize text frame on the socket resizes too', async () => {
    const { peer, sid, session } = await terminalSession();
    const client = await attach(session.ws_url);
    client.send(JSON.stringify({ type: 'resize', cols: 90, rows: 33 }));
    expect(await peer.take('proc.resize')).toMatchObject({ proc_id: sid, cols: 90, rows: 33 });
  });

  it('needs integer cols and rows within 1–1000; an unknown session is a 404; an ended one a 409', async () => {
    const { w, computer, peer, sid } = await terminalSession();
    for (const body of [{}, { cols: 80 }, { cols: 0, rows: 24 }, { cols: 80, rows: 2000 }, { cols: '80', rows: 24 }]) {
      await expectError(await w.api(`/${computer.id}/pty/${sid}/resize`, { method: 'POST', body }), 400, 'VALIDATION_FAILED');
    }
    await expectError(await w.api(`/${computer.id}/pty/b1b1b1b1b1/resize`, { method: 'POST', body: { cols: 80, rows: 24 } }), 404, 'NOT_FOUND');
    peer.exit(sid, 0);
    await peer.forgotten(sid);
    await expectError(await w.api(`/${computer.id}/pty/${sid}/resize`, { method: 'POST', body: { cols: 80, rows: 24 } }), 409, 'CONFLICT');
    expect(peer.requests.filter((r) => r.type === 'proc.resize')).toEqual([]);
  });
});
