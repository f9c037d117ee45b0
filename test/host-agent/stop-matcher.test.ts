/** Stop sequences matched on streamed text, across the chunk boundaries tokens fall on. */
import { describe, expect, it } from 'vitest';
import { StopMatcher } from '../../host-agent/model-server/stop-matcher.ts';

function run(stops: string[], chunks: string[]): { shown: string[]; stopped: boolean } {
  const m = new StopMatcher(stops);
  const shown = chunks.map((c) => m.push(c));
  shown.push(m.flush());
  return { shown: shown.filter(Boolean), stopped: m.stopped };
}

describe('StopMatcher', () => {
  it('shows everything at once when there are no stop sequences', () => {
    expect(run([], ['a', ' b'])).toEqual({ shown: ['a', ' b'], stopped: false });
  });

  it('stops at a sequence split over chunks, showing nothing of it or after it', () => {
    const r = run(['END'], ['one E', 'N', 'D two']);
    expect(r.shown.join('')).toBe('one ');
    expect(r.stopped).toBe(true);
  });

  it('holds back a possible start of a sequence and releases it when it turns out not to be one', () => {
    const m = new StopMatcher([' part']);
    expect(m.push('which ')).toBe('which');
    expect(m.push('pa')).toBe('');
    expect(m.push('y')).toBe(' pay');
    expect(m.flush()).toBe('');
  });

  it('stops at the earliest of several sequences', () => {
    expect(run(['b', 'a'], ['xxab']).shown.join('')).toBe('xx');
  });

  it('gives back held text at the end when no sequence came', () => {
    expect(run(['STOP'], ['go ST']).shown.join('')).toBe('go ST');
  });
});
