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

/** JSON bodies of POST /files/write are refused past this (the conventions page's 10 MB). */
export const MAX_WRITE_BODY_BYTES = 10 * 1024 * 1024;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** POST /files/write: the file's bytes as base64, or text as `content`; one of them. */
export const WriteBody = z
  .object({
    path: FsPath,
    content_base64: z.string().regex(BASE64, 'must be base64').refine((s) => s.length % 4 === 0, 'must be base64 (a multiple of 4 characters)').optional(),
    content: z.string().optional(),
  })
  .refine((b) => (b.content_base64 === undefined) !== (b.content === undefined), { message: 'send the bytes as content_base64, or text as content (one of them)', path: ['content_base64'] });

/** Export links last an hour unless asked otherwise: a second to a week. */
export const DEFAULT_EXPORT_TTL_S = 3600;
export const ExportBody = z.object({ path: FsPath, expires_in: z.number().int().min(1).max(7 * 86_400).default(DEFAULT_EXPORT_TTL_S) });
