/**
 * Events of a streamed command in two forms: compact items, as the log
 * stores them, and Server-Sent Events text, as viewers get them. A stored
 * stdout line is just the string and a stderr line a one-element array, so
 * the log holds little more than the output itself (SSE text of short lines is
 * nearly twice that), and a row is one JSON.stringify of many items.
 */
export interface SseEvent {
  event: string;
  data: unknown;
}

/** A stdout line; [line] a stderr line; anything else a whole event. */
export type LogItem = string | [string] | SseEvent;

export const outputItems = (lines: string[], stream: 'stdout' | 'stderr'): LogItem[] =>
  stream === 'stdout' ? lines : lines.map((line): [string] => [line]);

const OUT = ',"stream":"stdout"}\n\n';
const ERR = ',"stream":"stderr"}\n\n';

/** The SSE text of items numbered from `first`, skipping those numbered `after` or lower. */
export function sseText(items: readonly LogItem[], first: number, after = first - 1): string {
  let text = '';
  for (let i = Math.max(0, after + 1 - first); i < items.length; i++) {
    const it = items[i];
    const id = first + i;
    // The hot path of a chatty command: only the line goes through JSON.stringify.
    if (typeof it === 'string') text += 'id: ' + id + '\nevent: output\ndata: {"line":' + JSON.stringify(it) + OUT;
    else if (Array.isArray(it)) text += 'id: ' + id + '\nevent: output\ndata: {"line":' + JSON.stringify(it[0]) + ERR;
    else text += `id: ${id}\nevent: ${it.event}\ndata: ${JSON.stringify(it.data)}\n\n`;
  }
  return text;
}

/**
 * The SSE text of one stream's lines numbered from `first`: what sseText makes
 * of outputItems(lines, stream), faster. The lines are escaped by one
 * JSON.stringify of them all and cut apart again at `\n","`: a quote right
 * after the `n` is not escaped, so it closes an element, and every line but
 * the last ends with a newline, so every boundary has that form.
 */
export function outputText(lines: string[], stream: 'stdout' | 'stderr', first: number): string {
  for (let i = 0; i < lines.length - 1; i++) {
    if (lines[i].charCodeAt(lines[i].length - 1) !== 10) return sseText(outputItems(lines, stream), first);
  }
  const parts = JSON.stringify(lines).slice(2, -2).split('\\n","');
  if (parts.length !== lines.length) return sseText(outputItems(lines, stream), first);
  const tail = stream === 'stdout' ? OUT : ERR;
  let text = '';
  const last = parts.length - 1;
  for (let i = 0; i < last; i++) text += 'id: ' + (first + i) + '\nevent: output\ndata: {"line":"' + parts[i] + '\\n"' + tail;
  return text + 'id: ' + (first + last) + '\nevent: output\ndata: {"line":"' + parts[last] + '"' + tail;
}

/** About how many characters an item takes stored (for row sizes and lag; exactness is not needed). */
export const itemChars = (it: LogItem): number => (typeof it === 'string' ? it.length + 3 : Array.isArray(it) ? it[0].length + 5 : 64);
