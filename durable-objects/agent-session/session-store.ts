/**
 * Where a session's state is kept: its fixed facts (who, where, which model)
 * and its loop counters in the object's storage, the conversation as rows of
 * its own (it only grows, so each save appends the new messages, never
 * rewrites the old), and the session's row in D1 — what lists and gets
 * read — brought up to date with each save, masked like its events.
 */
import type { ChatMessage } from '../../schema/openai.ts';
import { isoNow } from '../../worker/http/ids.ts';
import type { HostRef } from '../host/tenant-host.ts';
import type { ModelChoice } from './model-choice.ts';
import type { LoopState } from './session-loop.ts';

/** What a session is, fixed at dispatch. */
export interface SessionMeta {
  id: string;
  host: HostRef;
  choice: ModelChoice;
}

type SavedLoop = Omit<LoopState, 'messages'>;

export class SessionStore {
  private stored: number | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly db: D1Database,
  ) {
    storage.sql.exec('CREATE TABLE IF NOT EXISTS session_messages (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    storage.sql.exec('CREATE TABLE IF NOT EXISTS session_inflight (one INTEGER PRIMARY KEY CHECK (one = 1), job_id TEXT NOT NULL)');
  }

  async meta(): Promise<SessionMeta | null> {
    return (await this.storage.get<SessionMeta>('meta')) ?? null;
  }

  /** The loop state as last saved, conversation included; null before dispatch. */
  async load(): Promise<LoopState | null> {
    const saved = await this.storage.get<SavedLoop>('loop');
    if (!saved) return null;
    const messages = this.storage.sql.exec<{ body: string }>('SELECT body FROM session_messages ORDER BY seq').toArray().map((r) => JSON.parse(r.body) as ChatMessage);
    this.stored = messages.length;
    return { ...saved, messages };
  }

  async create(meta: SessionMeta, state: LoopState): Promise<void> {
    await this.storage.put('meta', meta);
    await this.saveLocal(state);
  }

  /** Saves the state here, then in D1 (`mask` applied to what D1 shows). */
  async save(id: string, state: LoopState, mask: (s: string) => string): Promise<void> {
    await this.saveLocal(state);
    const maybe = (s: string | null) => (s === null ? null : mask(s));
    await this.db
      .prepare('UPDATE agent_sessions SET status = ?, turns_used = ?, steps_used = ?, tokens_used = ?, end_reason = ?, summary = ?, error = ?, updated_at = ?, completed_at = ? WHERE id = ?')
      .bind(state.status, state.turns_used, state.steps_used, state.tokens_used, state.end_reason, maybe(state.summary), maybe(state.error), isoNow(), state.completed_at === null ? null : isoNow(state.completed_at), id)
      .run();
  }

  /** The job of the command in flight, if any (kept apart: it is set and cleared within a step). */
  inflightJob(): string | null {
    return this.storage.sql.exec<{ job_id: string }>('SELECT job_id FROM session_inflight').toArray()[0]?.job_id ?? null;
  }

  setInflightJob(jobId: string | null): void {
    if (jobId === null) this.storage.sql.exec('DELETE FROM session_inflight');
    else this.storage.sql.exec('INSERT OR REPLACE INTO session_inflight (one, job_id) VALUES (1, ?)', jobId);
  }

  private async saveLocal(state: LoopState): Promise<void> {
    const { messages, ...rest } = state;
    if (this.stored === null) this.stored = this.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM session_messages').one().n;
    for (let i = this.stored; i < messages.length; i++) this.storage.sql.exec('INSERT OR REPLACE INTO session_messages (seq, body) VALUES (?, ?)', i, JSON.stringify(messages[i]));
    this.stored = messages.length;
    await this.storage.put('loop', rest);
  }
}
