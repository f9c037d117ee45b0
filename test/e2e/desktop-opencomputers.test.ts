/**
 * The OpenComputers desktop ticket end to end: a real host-mode agent (run by
 * an unprivileged user of this machine) and a real VNC server on this host
 * (TigerVNC's Xvnc, asking for its own password): the ticket's WebSocket
 * carries the whole VNC session — the server's greeting, its VNC
 * authentication, ServerInit and pixels — to and from the host's loopback.
 * A host without a VNC server gets a clear error at ticket time.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/local-stack.ts';
import { Client, newTenant, operatorClient } from './client.ts';
import { startHostAgent, type HostAgent } from './host-agent.ts';
import { RfbClient } from './rfb-client.ts';
import { startHostVnc, type HostVnc } from '../host-vnc.ts';

const PASSWORD = 'oc-desk1';
let api: Client;
let agent: HostAgent;
let vnc: HostVnc;
const base = () => `/opencomputers/hosts/${agent.hostId}`;

interface Ticket {
  ticket: string;
  ws_url: string;
  expires_at: string;
  host_id: string;
  port: number;
}

beforeAll(async () => {
  api = await newTenant('oc-desktop');
  [agent, vnc] = await Promise.all([startHostAgent(api, { name: 'oc-desktop-box' }), startHostVnc({ password: PASSWORD, width: 800, height: 600 })]);
});

afterAll(async () => {
  await agent?.stop();
  await vnc?.stop();
});

describe('the OpenComputers desktop ticket', () => {
  it('relays a real VNC session to the VNC server on the host: its greeting, its own password check, ServerInit and pixels', async () => {
    const t = await api.post<Ticket>(`${base()}/desktop/ticket`, { port: vnc.port });
    expect(t.status, JSON.stringify(t.body)).toBe(201);
    expect(t.body).toMatchObject({ host_id: agent.hostId, port: vnc.port });
    expect(new URL(t.body.ws_url).pathname).toBe('/opencomputers/ws/desktop');
    expect(Date.parse(t.body.expires_at)).toBeGreaterThan(Date.now());

    const session = await RfbClient.overWebSocket(t.body.ws_url);
    expect(await session.handshake(PASSWORD)).toMatchObject({ width: 800, height: 600 });
    expect((await session.rect(0, 0, 16, 16)).length).toBe(16 * 16 * 3);
    session.close();

    // Once: the same ticket does not open a second session.
    await expect(RfbClient.overWebSocket(t.body.ws_url)).rejects.toThrow(/401/);
    // And the VNC server's own password is the client's business: a wrong one is refused by it.
    const again = await api.post<Ticket>(`${base()}/desktop/ticket`, { port: vnc.port });
    const wrong = await RfbClient.overWebSocket(again.body.ws_url);
    await expect(wrong.handshake('not-it!!')).rejects.toThrow(/Authentication failure/);
  });

  it('a port where no VNC server listens, or where something else does, is a clear error at ticket time', async () => {
    const nothing = await freePort();
    const none = await api.post<{ error: { code: string; message: string } }>(`${base()}/desktop/ticket`, { port: nothing });
    expect(none.status).toBe(502);
    expect(none.body.error.code).toBe('PORT_NOT_LISTENING');
    expect(none.body.error.message).toMatch(new RegExp(`no VNC server is listening on port ${nothing}.*Screen Sharing`));

    // A server that is not VNC: it answers something else first.
    const other = net.createServer((s) => {
      s.on('error', () => undefined); // the probe hangs up hard once it has read the greeting
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const port = (other.address() as net.AddressInfo).port;
      const r = await api.post<{ error: { code: string; message: string } }>(`${base()}/desktop/ticket`, { port });
      expect(r.status).toBe(502);
      expect(r.body.error.message).toMatch(/is not a VNC server/);
    } finally {
      other.close();
    }
  });

  it('revoking the API key a ticket was made with ends its session and refuses its unused tickets; another key\'s session stays', async () => {
    const operator = operatorClient();
    const made = await operator.post<{ data: { id: string; key: string } }>(`/admin/organizations/${api.orgId}/api-keys`, { name: 'desktop-revoked', mode: 'live' });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const doomed = new Client(api.apiUrl, made.body.data.key, api.orgId);
    const open = async (who: Client) => {
      const t = await who.post<Ticket>(`${base()}/desktop/ticket`, { port: vnc.port });
      expect(t.status, JSON.stringify(t.body)).toBe(201);
      return t.body.ws_url;
    };
    const session = await RfbClient.overWebSocket(await open(doomed));
    await session.handshake(PASSWORD);
    const unused = await open(doomed);
    const kept = await RfbClient.overWebSocket(await open(api));
    await kept.handshake(PASSWORD);

    expect((await operator.del(`/admin/organizations/${api.orgId}/api-keys/${made.body.data.id}`)).status).toBe(200);
    const ended = await Promise.race([session.closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 60_000))]);
    expect(ended).toBe('closed');
    await expect(RfbClient.overWebSocket(unused)).rejects.toThrow(/401/);
    // The other key's session still carries pixels.
    expect((await kept.rect(0, 0, 8, 8)).length).toBe(8 * 8 * 3);
    kept.close();
  });

  it('a host whose agent is away gets no ticket', async () => {
    await agent.stop();
    const deadline = Date.now() + 30_000;
    let r;
    do {
      r = await api.post<{ error: { code: string } }>(`${base()}/desktop/ticket`, { port: vnc.port });
    } while (r.status === 201 && Date.now() < deadline);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('HOST_NOT_CONNECTED');
  });
});
