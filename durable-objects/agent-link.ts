/**
 * The agent's WebSocket as a Durable Object sees it: at most one live socket
 * (a newer one replaces an older one), hibernation-friendly (the socket is
 * found again through its tag after the object wakes), and requests with ids
 * answered by `result` messages, validated against the request's result schema.
 * The same link serves a computer socket (ComputerObject) and a host-mode
 * agent's host socket (HostObject); each sends the requests its agent takes.
 */
import type { z } from 'zod';
import { AGENT_RESULT_SCHEMAS, type AgentErrorCode, type AgentRequest, type AgentRequestType } from '../schema/protocol.ts';
import { fail, ok, type ErrorCode, type Result } from '../schema/errors.ts';

type BodyOf<T extends AgentRequestType> = Omit<Extract<AgentRequest, { type: T }>, 'id' | 'type'>;
type ResultOf<T extends AgentRequestType> = z.infer<(typeof AGENT_RESULT_SCHEMAS)[T]>;

/** How an agent's error answers the API; anything else the agent reports is a 502. */
const AGENT_ERRORS: Partial<Record<AgentErrorCode, ErrorCode>> = {
  NOT_RUNNING: 'COMPUTER_NOT_RUNNING',
  BAD_REQUEST: 'BAD_REQUEST',
  NO_SUCH_PATH: 'NOT_FOUND',
  FORBIDDEN: 'FORBIDDEN',
  PERMISSION_DENIED: 'FORBIDDEN',
  CONFLICT: 'CONFLICT',
  TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  NO_SPACE: 'INSUFFICIENT_STORAGE',
};

interface Pending {
  type: AgentRequestType;
  ws: WebSocket;
  resolve: (r: Result<unknown>) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** What is remembered on the socket itself, so it survives hibernation. */
export interface LinkAttachment {
  attached: boolean;
  agent_version?: string;
  /** The protocol the agent said it speaks in `attached`. */
  protocol?: { major: number; minor: number };
  host_id: string;
}

export class AgentLink {
  private pending = new Map<string, Pending>();
  private seq = 0;
  /** Callers of whenAttached, woken by markAttached. */
  private attachWaiters: Array<() => void> = [];

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly tag = 'agent',
  ) {}

  /** Accepts a new agent socket, closing any older one. */
  accept(ws: WebSocket, hostId: string): void {
    for (const old of this.ctx.getWebSockets(this.tag)) {
      try {
        old.close(4000, 'replaced by a newer agent connection');
      } catch {
        /* already closed */
      }
    }
    this.ctx.acceptWebSocket(ws, [this.tag]);
    ws.serializeAttachment({ attached: false, host_id: hostId } satisfies LinkAttachment);
  }

  /** The live socket whose agent has said `attached`, if any. */
  socket(): WebSocket | null {
    for (const ws of this.ctx.getWebSockets(this.tag)) {
      const a = ws.deserializeAttachment() as LinkAttachment | null;
      if (a?.attached && ws.readyState === WebSocket.OPEN) return ws;
    }
    return null;
  }

  markAttached(ws: WebSocket, agentVersion: string, protocol?: { major: number; minor: number }): void {
    const a = ws.deserializeAttachment() as LinkAttachment;
    ws.serializeAttachment({ ...a, attached: true, agent_version: agentVersion, protocol } satisfies LinkAttachment);
    for (const wake of this.attachWaiters.splice(0)) wake();
  }

  /** The attached socket, waiting up to `timeoutMs` for an agent to attach; null when none did. */
  async whenAttached(timeoutMs: number): Promise<WebSocket | null> {
    const deadline = Date.now() + timeoutMs;
    for (let ws = this.socket(); ; ws = this.socket()) {
      if (ws) return ws;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.attachWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The protocol of the attached agent, if it said one. */
  protocol(): { major: number; minor: number } | null {
    const ws = this.socket();
    return ws ? ((ws.deserializeAttachment() as LinkAttachment).protocol ?? null) : null;
  }

  /** Closes every socket of this link (the agent redials, and the route decides where it lands). */
  closeAll(code: number, reason: string): void {
    for (const ws of this.ctx.getWebSockets(this.tag)) {
      try {
        ws.close(code, reason);
      } catch {
        /* already closed */
      }
    }
  }

  isAgentSocket(ws: WebSocket): boolean {
    return this.ctx.getTags(ws).includes(this.tag);
  }

  /**
   * Sends a request and waits for its result; fails with AGENT_UNAVAILABLE when
   * there is no agent or it goes away. `onSent` runs once the request is on the
   * socket: a caller can then tell "never sent" (nothing happened) from "sent,
   * unanswered" (it may have happened).
   */
  request<T extends AgentRequestType>(type: T, body: BodyOf<T>, timeoutMs: number, opts: { onSent?: () => void } = {}): Promise<Result<ResultOf<T>>> {
    const ws = this.socket();
    if (!ws) return Promise.resolve(fail('AGENT_UNAVAILABLE', 'the computer\'s host agent is not connected; try again shortly'));
    const id = `r${++this.seq}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(fail('AGENT_UNAVAILABLE', `the host agent did not answer ${type} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending.set(id, { type, ws, resolve: resolve as (r: Result<unknown>) => void, timer });
      try {
        ws.send(JSON.stringify({ ...body, type, id }));
        opts.onSent?.();
      } catch {
        this.settle(id, fail('AGENT_UNAVAILABLE', 'the host agent connection closed'));
      }
    });
  }

  /** Delivers a `result` message to its waiting request. */
  onResult(msg: { id: string; ok: true; data: unknown } | { id: string; ok: false; error: { code: AgentErrorCode; message: string } }): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (!msg.ok) {
      this.settle(msg.id, fail(AGENT_ERRORS[msg.error.code] ?? 'AGENT_ERROR', msg.error.message));
      return;
    }
    const parsed = AGENT_RESULT_SCHEMAS[p.type].safeParse(msg.data);
    this.settle(msg.id, parsed.success ? ok(parsed.data) : fail('AGENT_ERROR', `the host agent sent a malformed ${p.type} result`));
  }

  /** Fails every waiting request when the agent socket goes away. */
  onClose(ws: WebSocket): void {
    for (const [id, p] of [...this.pending]) {
      if (p.ws === ws) this.settle(id, fail('AGENT_UNAVAILABLE', 'the host agent disconnected before answering'));
    }
  }

  private settle(id: string, r: Result<unknown>): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.resolve(r);
  }
}
