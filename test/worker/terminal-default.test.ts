import { describe, expect, it } from 'vitest';
import { expectJson } from './helpers.ts';
import { useAgentPeers, type Req } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';
import { attach } from './terminal-fixtures.ts';

useAgentPeers();

describe('the default terminal of GET …/urls', () => {
  it('terminal_url opens the default session, started on first attach and shared by later ones', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const urls = await expectJson<{ terminal_url: string; expires_at: number }>(await w.api(`/${computer.id}/urls`), 200);
    expect(urls.terminal_url).toMatch(new RegExp(`^wss://api\\.test/api/v1/computers/${computer.id}/terminal/default/ws\\?auth=`));

    const first = await attach(urls.terminal_url);
    const start: Req<'proc.start'> = await peer.take('proc.start');
    expect(start.params.argv).toEqual(['/bin/bash', '-l']);
    expect(start.params.tty).toEqual({ rows: 24, cols: 80 });

    const second = await attach(urls.terminal_url);
    // The second socket joins the same session: no second shell is started.
    await new Promise((r) => setTimeout(r, 100));
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toHaveLength(1);
    first.close();
    second.close();
  });
});
