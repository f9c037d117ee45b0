/**
 * Test agents and drivers get data dirs of their own (an agent removes
 * computers its server does not know), but they share one template dir: the
 * template takes a minute to build and is identical for all of them. The VM
 * driver's images (guest kernel, boot and disk images) are shared the same
 * way: each is named by what it holds and put in place whole.
 */
import fs from 'node:fs';
import path from 'node:path';

export const SHARED_DATA_DIR = process.env.HANGAR_DATA_DIR ?? '/var/lib/hangar';

/** Makes `<dataDir>/templates` and `<dataDir>/vm/images` point at the shared ones (unless it already has its own). */
export function useSharedTemplates(dataDir: string): void {
  shareDir(dataDir, 'templates');
  shareDir(dataDir, 'vm/images');
}

function shareDir(dataDir: string, rel: string): void {
  const shared = path.join(SHARED_DATA_DIR, rel);
  fs.mkdirSync(shared, { recursive: true });
  fs.mkdirSync(path.dirname(path.join(dataDir, rel)), { recursive: true });
  const link = path.join(dataDir, rel);
  if (path.resolve(link) === path.resolve(shared)) return;
  const existing = fs.lstatSync(link, { throwIfNoEntry: false });
  if (existing?.isSymbolicLink() && fs.readlinkSync(link) === shared) return;
  if (existing) fs.rmSync(link, { recursive: true, force: true });
  fs.symlinkSync(shared, link);
}
