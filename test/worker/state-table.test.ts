import { describe, expect, it } from 'vitest';
import { IN_FLIGHT, STATUSES, transition, type LifecycleEvent } from '../../durable-objects/computer/state-table.ts';

describe('computer lifecycle table', () => {
  it('follows the page: provisioning -> running, running <-> stopped, restart only when running', () => {
    expect(transition('provisioning', 'provisioned')).toBe('running');
    expect(transition('running', 'stop')).toBe('stopping');
    expect(transition('stopping', 'stopped')).toBe('stopped');
    expect(transition('stopped', 'start')).toBe('starting');
    expect(transition('starting', 'started')).toBe('running');
    expect(transition('running', 'restart')).toBe('restarting');
    expect(transition('restarting', 'restarted')).toBe('running');
  });

  it('refuses actions from the wrong status', () => {
    expect(transition('running', 'start')).toBeNull();
    expect(transition('stopped', 'stop')).toBeNull();
    expect(transition('stopped', 'restart')).toBeNull();
    expect(transition('provisioning', 'start')).toBeNull();
    expect(transition('starting', 'stop')).toBeNull();
    expect(transition('error', 'stop')).toBeNull();
    expect(transition('error', 'restart')).toBeNull();
  });

  it('a boot that keeps failing gives up in error, from where only a new start or a delete leads', () => {
    for (const s of ['provisioning', 'starting', 'restarting'] as const) expect(transition(s, 'gave_up')).toBe('error');
    for (const s of STATUSES) if (!['provisioning', 'starting', 'restarting'].includes(s)) expect(transition(s, 'gave_up')).toBeNull();
    expect(transition('error', 'start')).toBe('starting');
    expect(transition('error', 'move')).toBeNull();
  });

  it('allows delete from every status', () => {
    for (const s of STATUSES) expect(transition(s, 'delete')).toBe('deleting');
  });

  it('only agent reports finish an in-flight status, and a failure never claims success', () => {
    const done: LifecycleEvent[] = ['provisioned', 'started', 'stopped', 'restarted'];
    for (const s of STATUSES) {
      for (const e of done) {
        const next = transition(s, e);
        if (next !== null) expect(IN_FLIGHT.has(s)).toBe(true);
      }
    }
    expect(transition('starting', 'failed')).toBe('stopped');
    expect(transition('provisioning', 'failed')).toBe('error');
    expect(transition('stopping', 'failed')).toBe('running');
  });

  it('a computer that exits on its own is stopped, and one whose disk is gone is an error', () => {
    expect(transition('running', 'exited')).toBe('stopped');
    expect(transition('running', 'lost')).toBe('error');
    expect(transition('stopped', 'lost')).toBe('error');
  });

  it('a move goes stopped -> moving -> stopped, a failed one back to stopped, and only from stopped', () => {
    expect(transition('stopped', 'move')).toBe('moving');
    expect(transition('moving', 'moved')).toBe('stopped');
    expect(transition('moving', 'failed')).toBe('stopped');
    expect(transition('moving', 'delete')).toBe('deleting');
    for (const s of STATUSES) if (s !== 'stopped') expect(transition(s, 'move')).toBeNull();
    for (const s of STATUSES) if (s !== 'moving') expect(transition(s, 'moved')).toBeNull();
  });

  it('nothing but the move itself acts on a moving computer: no start, stop, restart or exit', () => {
    for (const e of ['start', 'stop', 'restart', 'exited', 'lost', 'started', 'stopped'] as const) expect(transition('moving', e)).toBeNull();
    expect(IN_FLIGHT.has('moving')).toBe(false);
  });
});
