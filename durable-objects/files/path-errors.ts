/**
 * What a computer said about a path, in the API's own words. The computer's
 * text never reaches API clients (its agent runs where the tenant is root, so
 * anything it says could be made up): its code says what happened, and the
 * request says which path.
 */
import { fail, type ErrorCode, type Result } from '../../schema/errors.ts';

/** The API's code for what a computer said about a path (as AgentLink maps an agent's codes). */
export const PATH_CODES: Record<string, ErrorCode> = {
  NO_SUCH_PATH: 'NOT_FOUND',
  FORBIDDEN: 'FORBIDDEN',
  CONFLICT: 'CONFLICT',
  NO_SPACE: 'INSUFFICIENT_STORAGE',
  BAD_REQUEST: 'BAD_REQUEST',
};

const WORDS: Partial<Record<ErrorCode, string>> = {
  NOT_FOUND: 'no such file or directory',
  FORBIDDEN: 'permission denied',
  CONFLICT: 'the path is in the way (a directory where a file is expected or the reverse, a path that exists, or a directory that is not empty)',
  INSUFFICIENT_STORAGE: "no space left on the computer's disk",
};

const ARCHIVE_REFUSED =
  'the archive cannot be unpacked: it is not a readable tar, tar.gz or zip, or a member would land outside the directory ' +
  '(an absolute path, "..", a link out of it) or is a device or a fifo; nothing was changed';

/** What an operation is about, for a message: one path, or both ends of a move. */
export type PathSubject = { path: string } | { from: string; to: string };

const subject = (s: PathSubject) => ('path' in s ? s.path : `${s.from} -> ${s.to}`);

/**
 * The failure to answer for `code` about `what` (`op` names the operation).
 * Codes that are not about a path (the agent away, the computer stopped) keep
 * their message, which is the API's own.
 */
export function pathFailure(code: ErrorCode, message: string, op: string, what: PathSubject): Result<never> {
  const words = WORDS[code];
  if (words) return fail(code, `${words}: ${subject(what)}`);
  if (code === 'BAD_REQUEST') return fail(code, op === 'unpack' ? ARCHIVE_REFUSED : `the computer refused to ${op} ${subject(what)}`);
  return fail(code, message);
}
