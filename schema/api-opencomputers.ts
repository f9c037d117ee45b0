/**
 * Request bodies of OpenComputers (spec/05-opencomputers.txt): tenant hosts,
 * jobs, secrets, terminal tickets and files. Field errors become 400s naming
 * the field (worker/http/body.ts).
 */
import { z } from 'zod';
import { HostRegion } from './api-admin.ts';
import { StringMap } from './string-map.ts';
import { ENV_NAME, EXEC_MAX_COMMAND_BYTES } from './api.ts';
import { ProcId } from './protocol.ts';
import { DisplayName } from './text.ts';

const utf8Length = (s: string) => new TextEncoder().encode(s).byteLength;
const noNul = (s: string) => !s.includes('\0');
const NO_NUL = 'must not contain NUL characters';

export const RegisterTenantHost = z.object({
  name: DisplayName,
  region: HostRegion.optional(),
  labels: StringMap.default({}),
});

export const UpdateTenantHost = z
  .object({ name: DisplayName.optional(), region: HostRegion.optional(), labels: StringMap.optional() })
  .refine((b) => b.name !== undefined || b.region !== undefined || b.labels !== undefined, 'name, region or labels is required');

/** Jobs: default 60 s; longer values are clamped to JOB_MAX_TIMEOUT_S, as exec clamps to its maximum. */
export const JOB_DEFAULT_TIMEOUT_S = 60;
export const JOB_MAX_TIMEOUT_S = 3600;
/** Stdout and stderr each keep at most this much on the job record; the stream has all of it while kept. */
export const JOB_MAX_RECORD_BYTES = 1024 * 1024;

/** Shown in an error for a bad env entry: enough to find it, never a whole value. */
const preview = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

const EnvEntries = z
  .array(z.string())
  .max(1024)
  .superRefine((entries, ctx) => {
    entries.forEach((e, i) => {
      const eq = e.indexOf('=');
      if (eq <= 0 || !ENV_NAME.test(e.slice(0, eq)) || eq > 256) {
        ctx.addIssue({ code: 'custom', path: [i], message: `${preview(e)} is not KEY=VALUE (a name of letters, digits and underscores, not starting with a digit, then "=")` });
      } else if (!noNul(e)) ctx.addIssue({ code: 'custom', path: [i], message: NO_NUL });
      else if (e.length > 32 * 1024) ctx.addIssue({ code: 'custom', path: [i], message: 'must be at most 32768 characters' });
    });
  });

/** What a job's command, args and env may take together: far below what one agent message and an exec's argv/envp hold. */
export const JOB_MAX_SPEC_BYTES = 512 * 1024;

export const CreateJob = z.object({
  command: z
    .string()
    .min(1)
    .refine((s) => utf8Length(s) <= EXEC_MAX_COMMAND_BYTES, `must be at most ${EXEC_MAX_COMMAND_BYTES} bytes`)
    .refine(noNul, NO_NUL),
  /** With args, `command` is the program and these go to it as they are, without a shell. */
  args: z.array(z.string().max(EXEC_MAX_COMMAND_BYTES).refine(noNul, NO_NUL)).max(4096).optional(),
  env: EnvEntries.optional(),
  cwd: z.string().min(1).max(4096).refine(noNul, NO_NUL).optional(),
  timeout: z.number().int().positive().optional(),
  /** false: answer 202 at once (as `Prefer: respond-async` does) instead of when the job ends. */
  wait: z.boolean().optional(),
}).refine(
  (j) => utf8Length(j.command) + [...(j.args ?? []), ...(j.env ?? [])].reduce((n, s) => n + utf8Length(s) + 1, 0) <= JOB_MAX_SPEC_BYTES,
  `command, args and env together must be at most ${JOB_MAX_SPEC_BYTES} bytes`,
);
export type CreateJob = z.infer<typeof CreateJob>;

/**
 * Secrets per scope (a tenant's own, each host's), and the bytes of their
 * values together: a host's whole set (its tenant's and its own) goes to its
 * agent in one message of at most 1 MiB, escaping included.
 */
export const SECRETS_PER_SCOPE = 100;
export const SECRET_BYTES_PER_SCOPE = 64 * 1024;
export const SECRET_VALUE_BYTES = 32 * 1024;
const SecretValue = z
  .string()
  .refine((v) => utf8Length(v) <= SECRET_VALUE_BYTES, `must be at most ${SECRET_VALUE_BYTES} bytes`)
  .refine(noNul, NO_NUL);
const Description = z.string().max(1024).nullable();
export const CreateSecret = z.object({
  name: z.string().min(1).max(256).regex(ENV_NAME, 'must be letters, digits and underscores, not starting with a digit'),
  value: SecretValue,
  description: Description.optional(),
});
export const UpdateSecret = z
  .object({ value: SecretValue.optional(), description: Description.optional() })
  .refine((b) => b.value !== undefined || b.description !== undefined, 'value or description is required');

const TermSize = z.number().int().min(1).max(1000);
/** A ticket for a new terminal session, or (with session_id) for re-attaching to one. */
export const TerminalTicketBody = z.object({
  session_id: ProcId.optional(),
  cols: TermSize.default(80),
  rows: TermSize.default(24),
});

/** A path on the host: absolute, or relative to the agent user's home. */
export const HostPath = z.string().min(1).max(4096).refine(noNul, NO_NUL);
export const MkdirBody = z.object({ path: HostPath });
