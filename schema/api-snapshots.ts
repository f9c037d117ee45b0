/** Request bodies of the snapshot routes (worker/routes/computers/snapshots.ts) and what a snapshot remembers of its source. */
import { z } from 'zod';
import { ISOLATIONS } from './isolation.ts';
import { SIZE_NAMES } from './sizes.ts';
import { DisplayName } from './text.ts';

/** POST /computers/{id}/snapshots. `keep`: the snapshot outlives its computer. */
export const CreateSnapshot = z.object({ comment: z.string().max(1024).nullable().optional(), keep: z.boolean().optional() });
/** PATCH /computers/{id}/snapshots/{sid}: only what is sent changes. */
export const UpdateSnapshot = z
  .object({ comment: z.string().max(1024).nullable().optional(), keep: z.boolean().optional() })
  .refine((b) => b.comment !== undefined || b.keep !== undefined, { message: 'send comment or keep', path: ['comment'] });
/** POST /computers/{id}/restore/{sid}: the new computer's name (default: the source's name + "-restored"). */
export const RestoreSnapshot = z.object({ name: DisplayName.optional() });

/** What a snapshot was taken of: enough to make a computer of it after its own computer is gone (D1 snapshots.source). */
export const SnapshotSource = z.object({
  name: z.string(),
  template_type: z.string(),
  size: z.enum(SIZE_NAMES),
  selected_apps: z.array(z.string()),
  /** The disk's quota when it was taken: a computer made of it gets at least this much. */
  disk_gb: z.number().int().positive().optional(),
  /** Its screen (`WIDTHxHEIGHT`): a computer made of it keeps the desktop's size. */
  resolution: z.string().max(16).optional(),
  /** The driver whose copy it is: a computer made of it is of the same isolation (absent from older snapshots: sandbox). */
  isolation: z.enum(ISOLATIONS).optional(),
});
export type SnapshotSource = z.infer<typeof SnapshotSource>;
