import { describe, expect, it } from 'vitest';
import { computerPaths, hostnameFromName } from '../../host-agent/drivers/sandbox/paths.ts';

describe('sandbox paths', () => {
  it('makes a hostname slug of the computer name', () => {
    expect(hostnameFromName('My Dev Box #2')).toBe('my-dev-box-2');
    expect(hostnameFromName('  Ünïcode—name ')).toBe('unicode-name');
    expect(hostnameFromName('!!!')).toBe('computer');
    expect(hostnameFromName('x'.repeat(80))).toHaveLength(63);
  });

  it('refuses ids that could leave the data dir', () => {
    expect(() => computerPaths('/data', '../etc')).toThrow(/invalid computer id/);
    expect(() => computerPaths('/data', 'a/b')).toThrow(/invalid computer id/);
    expect(computerPaths('/data', '3f0c1a9e-0000-4000-8000-000000000001').socket).toBe(
      '/data/computers/3f0c1a9e-0000-4000-8000-000000000001/run/guest.sock',
    );
  });
});
