/** Terminal sessions made through the public API on a scripted agent, and sockets attached to them. */
import { expect } from 'vitest';
import { expectJson } from './helpers.ts';
import type { ComputerPeer, Req } from './agent-peer.ts';
import { runningComputer, world, type ComputerView, type World } from './computer-fixtures.ts';
import { connect, type ClientSocket } from './ws-client.ts';

export interface TerminalCreated {
  session_id: string;
  ws_url: string;
  stream_auth: string;
  expires_at: number;
  computer_id: string;
}

/** POST …/terminal, 201 expected; also returns the proc.start the agent got. */
export async function createTerminal(w: World, computerId: string, peer: ComputerPeer, body: Record<string, unknown> = {}) {
  const res = await w.api(`/${computerId}/terminal`, { method: 'POST', body });
  const { data } = await expectJson<{ data: TerminalCreated }>(res, 201);
  const start: Req<'proc.start'> = await peer.take('proc.start');
  expect(start.params.proc_id).toBe(data.session_id);
  return { data, start };
}

/** The Worker path of a ws_url (the test client fetches it through SELF with an Upgrade). */
export const pathOf = (wsUrl: string): string => {
  const u = new URL(wsUrl);
  return `${u.pathname}${u.search}`;
};

export const attach = (wsUrl: string): Promise<ClientSocket> => connect(pathOf(wsUrl));

/** A running computer with a terminal session on it. */
export async function terminalSession(body: Record<string, unknown> = {}): Promise<{
  w: World;
  computer: ComputerView;
  peer: ComputerPeer;
  session: TerminalCreated;
  sid: string;
}> {
  const w = await world();
  const { computer, peer } = await runningComputer(w);
  const { data } = await createTerminal(w, computer.id, peer, body);
  return { w, computer, peer, session: data, sid: data.session_id };
}

export const text = (s: string) => new TextEncoder().encode(s);
