/**
 * Test agents and drivers get data dirs of their own (an agent removes
 * computers its server does not know), but they share one template dir: the
 * template takes a minute to build and is identical for all of them.
 */
import fs from 'node:fs';
import path from 'node:path';

export const SHARED_DATA_DIR = process.env.HANGAR_DATA_DIR ?? '/var/lib/hangar';

/** Makes `<dataDir>/templates` point at the shared template dir (unless it already has its own). */
export function useSharedTemplates(dataDir: string): void {
  const shared = path.join(SHARED_DATA_DIR, 'templates');
  fs.mkdirSync(shared, { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true });
  const link = path.join(dataDir, 'templates');
  if (path.resolve(link) === path.resolve(shared)) return;
  const existing = fs.lstatSync(link, { throwIfNoEntry: false });
  if (existing?.isSymbolicLink() && fs.readlinkSync(link) === shared) return;
  if (existing) fs.rmSync(link, { recursive: true, force: true });
  fs.symlinkSync(shared, link);
}
