/** Request bodies of the files routes (worker/routes/computers/files.ts), validated at the edge. */
import { z } from 'zod';
import { FsPath } from './guest.ts';

/** Permission bits as an octal string: "755", "0755", "4755", "0o644". */
export const OctalMode = z
  .string()
  .regex(/^(0o?)?[0-7]{3,4}$/, 'must be an octal mode like "0755"')
  .transform((s) => parseInt(s.replace(/^0o/, ''), 8))
  .refine((n) => n <= 0o7777, 'must be at most 07777');

export const FilePathBody = z.object({ path: FsPath });
export const MkdirBody = z.object({ path: FsPath, recursive: z.boolean().default(true), mode: OctalMode.default(0o755) });
export const RenameBody = z.object({ from: FsPath, to: FsPath });
export const CopyBody = z.object({ from: FsPath, to: FsPath, recursive: z.boolean().default(false) });
export const ChmodBody = z.object({ path: FsPath, mode: OctalMode });
/** DELETE /files: the path in a JSON body or in `?path=` (a body wins); directories go with everything in them unless recursive is false. */
export const DeleteBody = z.object({ path: FsPath.optional(), recursive: z.boolean().optional() });
