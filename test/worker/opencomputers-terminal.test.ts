import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { connect, upgrade } from './ws-client.ts';

useAgentPeers();

interface Ticket {
  ticket: string;
  ws_url: string;
  expires_at: string;
  session_id: string;
}

async function hostWithTerminal(hello = {}) {
  const t = await createTenant();
  const h = await registerTenantHost(t.apiKey);
  const peer = await HostModePeer.online(h.key, hello);
  const ticket = (body: unknown = {}) => tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/terminal/ticket`, { method: 'POST', body });
  return { t, h, peer, ticket };
}

/** The socket path and query of a ws_url, as SELF.fetch takes it. */
const pathOf = (wsUrl: string) => {
  const u = new URL(wsUrl);
  return `${u.pathname}${u.search}`;
};

describe('terminal tickets on a tenant host', () => {
  it('a ticket starts a login shell on a PTY and names ws_url on the API host, outside /api/v1, good for about 30 s', async () => {
    const { peer, ticket } = await hostWithTerminal();
    const t = await expectJson<Ticket>(await ticket({ cols: 120, rows: 40 }), 201);
    expect(t.ticket).toMatch(/^tk_[0-9a-f]{32}[A-Za-z0-9_-]{43}$/);
    expect(t.ws_url).toBe(`wss://api.test/opencomputers/ws/terminal?ticket=${t.ticket}`);
    const left = Date.parse(t.expires_at) - Date.now();
    expect(left).toBeGreaterThan(15_000);
    expect(left).toBeLessThanOrEqual(31_000);
    const start = await peer.take('proc.start');
    expect(start.params).toMatchObject({ proc_id: t.session_id, argv: ['/bin/zsh', '-l'], tty: { cols: 120, rows: 40 }, stdin: true });
  });

  it('the socket relays keystrokes and output, replays on re-attach with a new ticket, and a ticket works once', async () => {
    const { peer, ticket } = await hostWithTerminal();
    const t = await expectJson<Ticket>(await ticket(), 201);
    const p = (await peer.take('proc.start')).params.proc_id;
    const ws = await connect(pathOf(t.ws_url));
    ws.send('echo hi\r');
    await ws.until(() => peer.stdinOf(p) === 'echo hi\r');
    peer.output(p, 'pty', 'echo hi\r\nhi\r\n$ ');
    await ws.until(() => ws.text() === 'echo hi\r\nhi\r\n$ ');
    ws.send(JSON.stringify({ type: 'resize', cols: 100, rows: 30 }));
    expect(await peer.take('proc.resize')).toMatchObject({ proc_id: p, cols: 100, rows: 30 });
    ws.close();
    await sleep(50);
    // The used ticket is refused; a new ticket for the session replays what it printed.
    expect((await upgrade(pathOf(t.ws_url))).status).toBe(401);
    const again = await expectJson<Ticket>(await ticket({ session_id: t.session_id }), 201);
    expect(again.session_id).toBe(t.session_id);
    const back = await connect(pathOf(again.ws_url));
    await back.until(() => back.text() === 'echo hi\r\nhi\r\n$ ');
    peer.exit(p, 0);
    expect(await back.waitClosed()).toMatchObject({ code: 4000, reason: 'shell exited with code 0' });
  });

  it('a forged or malformed ticket is a 401 and a plain GET a 400, each in the envelope', async () => {
    const { h } = await hostWithTerminal();
    const forged = `tk_${h.id.replaceAll('-', '')}${'A'.repeat(43)}`;
    await expectError(await upgrade(`/opencomputers/ws/terminal?ticket=${forged}`), 401, 'UNAUTHORIZED');
    await expectError(await upgrade('/opencomputers/ws/terminal?ticket=nope'), 401, 'UNAUTHORIZED');
    await expectError(await upgrade('/opencomputers/ws/terminal'), 401, 'UNAUTHORIZED');
    const { apiFetch } = await import('./helpers.ts');
    await expectError(await apiFetch(`/opencomputers/ws/terminal?ticket=${forged}`), 400, 'BAD_REQUEST');
  });

  it('a session of another tenant, or of none, cannot be re-attached', async () => {
    const { ticket } = await hostWithTerminal();
    await expectError(await ticket({ session_id: '0123456789abcdef0123456789abcdef' }), 404, 'NOT_FOUND');
    await expectError(await ticket({ session_id: 'NOT A SESSION' }), 400, 'VALIDATION_FAILED');
  });

  it('a host whose agent cannot make a PTY, or is offline, answers 409', async () => {
    const { ticket, peer } = await hostWithTerminal({ terminal: false });
    expect((await expectError(await ticket(), 409, 'CONFLICT')).error.message).toContain('cannot open terminals');
    peer.close();
    await sleep(50);
    await expectError(await ticket(), 409, 'HOST_NOT_CONNECTED');
  });
});
