/**
 * The place of a reader of all a tenant's hosts' events in each host's own
 * log: an event id of GET /opencomputers/hosts/events. Each host numbers its
 * events (durable-objects/host/host-events.ts); the stream's id after an event
 * names, for every host it has delivered events of, the number of the last
 * one, so Last-Event-ID resumes every host exactly where it was.
 *
 * Written `<host id, 32 hex digits>.<seq>` joined by `~`. Anything else in a
 * Last-Event-ID (a per-host stream's plain number, a truncated id) counts for
 * nothing: hosts it does not name are read from their oldest kept event,
 * which is where a reader that had none of their events must start.
 */
export type HostCursor = Map<string, number>;

const ENTRY = /^([0-9a-f]{32})\.(\d{1,15})$/;
/** More entries than a stream follows hosts are not read. */
const MAX_ENTRIES = 1000;

export function parseHostCursor(raw: string | null): HostCursor {
  const cursor: HostCursor = new Map();
  if (!raw) return cursor;
  for (const part of raw.split('~').slice(0, MAX_ENTRIES)) {
    const m = ENTRY.exec(part.trim());
    if (!m) continue;
    const hex = m[1];
    const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    cursor.set(id, Number(m[2]));
  }
  return cursor;
}

export function formatHostCursor(cursor: HostCursor): string {
  const parts: string[] = [];
  for (const [id, seq] of cursor) if (seq > 0) parts.push(`${id.replaceAll('-', '')}.${seq}`);
  return parts.join('~');
}
