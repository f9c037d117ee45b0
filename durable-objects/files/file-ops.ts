/** One file operation in a running computer, asked of its host agent (protocol 1.6 `fs`). */
import type { z } from 'zod';
import { fail, ok, type Result } from '../../schema/errors.ts';
import { FS_RESPONSES, type FsOp, type FsRequest } from '../../schema/guest.ts';
import type { AgentLink } from '../agent-link.ts';
import { agentTooOld } from '../agent-version.ts';
import { pathFailure, type PathSubject } from './path-errors.ts';

/** The protocol minor that brought file operations. */
export const FILES_MINOR = 6;
/** A recursive copy or delete of a large tree takes a while; the agent's own limit is the same. */
const FS_TIMEOUT_MS = 10 * 60_000;

export type FsAnswerOf<O extends FsOp> = z.infer<(typeof FS_RESPONSES)[O]>;

export async function fileOp<O extends FsOp>(link: AgentLink, request: Extract<FsRequest, { op: O }>): Promise<Result<FsAnswerOf<O>>> {
  const refused = agentTooOld(link, FILES_MINOR, 'file operations');
  if (refused) return refused;
  const r = await link.request('fs', { request }, FS_TIMEOUT_MS);
  if (!r.ok) return pathFailure(r.code, r.message, request.op, subjectOf(request));
  const parsed = (FS_RESPONSES[request.op] as unknown as z.ZodType<FsAnswerOf<O>>).safeParse(r.value);
  return parsed.success ? ok(parsed.data) : fail('AGENT_ERROR', `the host agent sent a malformed ${request.op} answer`);
}

const subjectOf = (r: FsRequest): PathSubject => ('path' in r ? { path: r.path } : { from: r.from, to: r.to });
