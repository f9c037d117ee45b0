/**
 * The two ways a streamed command's lines become SSE text must agree: the
 * fast batch path (outputText) and the general one (sseText of the stored
 * items), for any line content, since viewers get one live and the other
 * when they catch up from the log.
 */
import { describe, expect, it } from 'vitest';
import { outputItems, outputText, sseText } from '../../durable-objects/exec/sse-events.ts';
import { parseSse } from '../e2e/sse.ts';
import { nastyString, seeded } from '../e2e/fuzz-cases.ts';

/** Fragments that look like the batch path's cut (`\n","`) or its pieces. */
const TRICKS = ['\\n","', '\\n', '\\', '","', '"', 'n","', '\\\\n","', '\n","'];

function expectSame(lines: string[], stream: 'stdout' | 'stderr', first: number): void {
  const fast = outputText(lines, stream, first);
  expect(fast).toBe(sseText(outputItems(lines, stream), first));
  // And what a viewer parses out of it is the lines themselves.
  const { messages } = parseSse(fast);
  expect(messages.map((m) => (JSON.parse(m.data) as { line: string }).line)).toEqual(lines);
}

describe('SSE text of output lines', () => {
  it('is the same through the batch path and the general one, for lines made to confuse the batch cut', () => {
    const rng = seeded(7);
    for (let round = 0; round < 300; round++) {
      const lines: string[] = [];
      const n = 1 + Math.floor(rng() * 8);
      for (let i = 0; i < n; i++) {
        let line = '';
        for (let k = Math.floor(rng() * 4); k > 0; k--) line += rng() < 0.5 ? TRICKS[Math.floor(rng() * TRICKS.length)] : nastyString(rng, 1 + Math.floor(rng() * 5));
        line = line.replaceAll('\n', ' ');
        // Lines end with a newline, except that the last may not (a flushed rest or a cut piece).
        if (i < n - 1 || rng() < 0.5) line += '\n';
        lines.push(line);
      }
      expectSame(lines, rng() < 0.5 ? 'stdout' : 'stderr', 1 + Math.floor(rng() * 1000));
    }
  });

  it('falls back to the general path when a line before the last does not end with a newline (a cut long line)', () => {
    expectSame(['x'.repeat(20), 'rest\n', 'next\n'], 'stdout', 5);
    expectSame(['ends with a backslash n \\n', 'b\n'], 'stdout', 1);
  });

  it('numbers events from `first`, one a line', () => {
    const { messages } = parseSse(outputText(['a\n', 'b\n', 'c'], 'stderr', 41));
    expect(messages.map((m) => [m.id, m.event])).toEqual([
      ['41', 'output'],
      ['42', 'output'],
      ['43', 'output'],
    ]);
    expect(JSON.parse(messages[2].data)).toEqual({ line: 'c', stream: 'stderr' });
  });
});
