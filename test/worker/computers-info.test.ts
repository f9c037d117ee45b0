import { describe, expect, it } from 'vitest';
import { expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, world } from './computer-fixtures.ts';

useAgentPeers();

describe('connection info', () => {
  it('vnc-credentials: desktop_url and ws_url on the computer\'s host with the token, expires_at, computer_id, slug', async () => {
    const w = await world();
    const c = await createComputer(w, { name: 'My Computer' });
    const creds = await expectJson<Record<string, unknown>>(await w.api(`/${c.id}/vnc-credentials`), 200);
    expect(Object.keys(creds).sort()).toEqual(['computer_id', 'desktop_url', 'expires_at', 'slug', 'token', 'ws_url']);
    expect(creds).toMatchObject({ desktop_url: `${c.desktop_url}#auth=${creds.token}`, computer_id: c.id, slug: `my-computer-${c.id.slice(0, 8)}` });
    expect(creds.ws_url).toBe(`wss://${new URL(c.desktop_url).host}/ws/vnc/${c.id}?auth=${creds.token}`);
    const now = Math.floor(Date.now() / 1000);
    expect(creds.expires_at).toBeGreaterThan(now);
    expect(creds.expires_at).toBeLessThanOrEqual(now + 3600);
  });

  it('stream-token: a fresh {token, expires_at}', async () => {
    const w = await world();
    const c = await createComputer(w);
    const t = await expectJson<{ token: string; expires_at: number }>(await w.api(`/${c.id}/stream-token`, { method: 'POST' }), 200);
    expect(Object.keys(t).sort()).toEqual(['expires_at', 'token']);
    expect(t.token.length).toBeGreaterThan(20);
    expect(t.expires_at).toBeGreaterThan(Math.floor(Date.now() / 1000));
  });

  it('urls: desktop_url, stream_url, a short-lived terminal_url of the default session, and computer_id', async () => {
    const w = await world();
    const c = await createComputer(w);
    const urls = await expectJson<Record<string, string>>(await w.api(`/${c.id}/urls`), 200);
    const token = urls.terminal_url.split('auth=')[1];
    expect(urls).toEqual({
      desktop_url: `${c.desktop_url}#auth=${token}`,
      stream_url: `${c.desktop_url}#auth=${token}`,
      terminal_url: expect.stringMatching(new RegExp(`^wss?://.+/api/v1/computers/${c.id}/terminal/default/ws\\?auth=.+$`)),
      expires_at: expect.any(Number),
      computer_id: c.id,
    });
  });

  it('apps: the template apps and the selected apps', async () => {
    const w = await world();
    const c = await createComputer(w, { selected_apps: ['nodejs'] });
    const apps = await expectJson<{ apps: { name: string; source: string }[] }>(await w.api(`/${c.id}/apps`), 200);
    expect(apps.apps).toContainEqual({ name: 'python3', source: 'template' });
    expect(apps.apps).toContainEqual({ name: 'nodejs', source: 'selected_apps' });
  });
});
