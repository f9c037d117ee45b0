/** The drivers' small JSON records on disk (a computer's meta, its state): read or null, written whole or not at all. */
import fs from 'node:fs';

/** The record in `file`, or null when it is missing or not JSON. Written by this host: not checked field by field. */
export function readJsonFile<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Writes `value` to `file` through a rename, so a reader never sees half of it. */
export function writeJsonFile(file: string, value: unknown, indent?: number): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, indent) + '\n');
  fs.renameSync(tmp, file);
}
