/** String maps callers attach to resources: host labels, computer metadata. One rule for both. */
import { z } from 'zod';

/** Keys start with a letter or digit (so `__proto__` and friends are never keys) and stay short. */
export const MapKey = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, 'keys are 1-63 letters, digits, ".", "_", "/" or "-", starting with a letter or digit');

/** At most this many entries. */
export const MAX_MAP_ENTRIES = 64;
/** Characters of a value at most. */
export const MAX_MAP_VALUE = 255;

/** A flat map of short strings: at most 64 keys, values up to 255 characters (about 20 KB in all). */
export const StringMap = z
  .record(MapKey, z.string().max(MAX_MAP_VALUE))
  .refine((m) => Object.keys(m).length <= MAX_MAP_ENTRIES, `at most ${MAX_MAP_ENTRIES} entries`);
