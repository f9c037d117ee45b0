/**
 * Events in the shape of the OpenComputers page (spec/05): `event: <type>`
 * and `data: {"type", "<thing>_id", "data", "timestamp"}` — host events, job
 * output, and later agent sessions and clusters. Stored compactly as
 * `[type, timestamp, data]` (plus the thing's id when one log holds events of
 * many, as the all-hosts stream does).
 */
import type { LogFormat } from './event-log.ts';

export type TypedItem = [type: string, timestamp: string, data: unknown, owner?: string];

/**
 * The format of a log of one kind of thing: `key` names its id field
 * ("job_id", "host_id"), `owner` is the id when every event is of the same one.
 */
export function typedEventFormat(key: string, owner?: string): LogFormat<TypedItem> {
  const ownerField = (item: TypedItem) => `"${key}":${JSON.stringify(item[3] ?? owner ?? null)}`;
  return {
    text(items, first, after = first - 1) {
      let text = '';
      for (let i = Math.max(0, after + 1 - first); i < items.length; i++) {
        const it = items[i];
        text += `id: ${first + i}\nevent: ${it[0]}\ndata: {"type":${JSON.stringify(it[0])},${ownerField(it)},"data":${JSON.stringify(it[2] ?? null)},"timestamp":"${it[1]}"}\n\n`;
      }
      return text;
    },
    chars: (it) => (typeof it[2] === 'string' ? it[2].length : JSON.stringify(it[2] ?? null).length) + 64,
  };
}
