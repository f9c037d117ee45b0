/** Request bodies of the public API (computers, exec, env vars, ports), validated at the edge. */
import { z } from 'zod';
import { SIZE_NAMES } from './sizes.ts';
import { Resolution } from './desktop.ts';
import { DisplayName, PlainText } from './text.ts';
import { StringMap } from './string-map.ts';
import { ISOLATIONS } from './isolation.ts';

/** Templates a computer can be created from. */
export const TEMPLATES = ['miosa-desktop'] as const;

/** Apps `selected_apps` may name; each is installed into the computer at provisioning. */
export const APPS = ['nodejs'] as const;

const Name = DisplayName;

/**
 * Who may open the computer's preview URLs (the SDKs' `visibility`): anyone,
 * callers of its organization, or holders of a key. Recorded on the computer;
 * ports carry their own visibility.
 */
export const COMPUTER_VISIBILITIES = ['public', 'tenant', 'key'] as const;
export const ComputerVisibility = z.enum(COMPUTER_VISIBILITIES);
export type ComputerVisibility = z.infer<typeof ComputerVisibility>;

export const CreateComputer = z.object({
  name: Name,
  template_type: z.enum(TEMPLATES, { message: `unknown template; available: ${TEMPLATES.join(', ')}` }),
  size: z.enum(SIZE_NAMES).default('small'),
  /** An extension of the spec: sandbox or vm; absent means the operator's default (DEFAULT_ISOLATION). */
  isolation: z.enum(ISOLATIONS, { message: `unknown isolation; available: ${ISOLATIONS.join(', ')}` }).optional(),
  selected_apps: z.array(z.enum(APPS, { message: `unknown app; available: ${APPS.join(', ')}` })).max(16).default([]),
  region: z.string().min(1).max(64).optional(),
  auto_stop: z.number().int().min(0).max(30 * 86_400).optional(),
  workspace_id: z.uuid().optional(),
  workspace_slug: z.string().min(1).max(64).optional(),
  workspace_name: DisplayName.optional(),
  project_id: z.uuid().optional(),
  project_slug: z.string().min(1).max(64).optional(),
  project_name: DisplayName.optional(),
  external_workspace_id: PlainText(255).optional(),
  external_user_id: PlainText(255).optional(),
  external_project_id: PlainText(255).optional(),
  metadata: StringMap.optional(),
  visibility: ComputerVisibility.optional(),
  /** The desktop's screen, WIDTHxHEIGHT (an extension; default 1280x720). */
  resolution: Resolution.optional(),
});
export type CreateComputer = z.infer<typeof CreateComputer>;

/** PATCH/PUT: only the fields sent change; `metadata` replaces the whole map. */
export const UpdateComputer = z.object({
  agent_session_id: PlainText(255).nullable().optional(),
  name: Name.optional(),
  metadata: StringMap.optional(),
  visibility: ComputerVisibility.optional(),
});

export const CloneComputer = z.object({ name: Name.optional() });
export const ResizeComputer = z.object({ size: z.enum(SIZE_NAMES) });
/** An extension: `keep_memory` (computers with isolation vm) keeps the memory so the next start resumes where it was. */
export const StopComputer = z.object({ keep_memory: z.boolean().optional() });
export const MoveComputer = z.object({ region: z.string().min(1).max(64) });
const AutoStopSeconds = z.number().int().min(0).max(30 * 86_400).nullable();
/**
 * The computers page's `auto_stop_seconds`, or `seconds` as some clients send
 * it (copied over before validation, so a missing value still says
 * "auto_stop_seconds is required"); both at once must agree.
 */
export const AutoStop = z.preprocess(
  (b) => (b && typeof b === 'object' && !Array.isArray(b) && !('auto_stop_seconds' in b) && 'seconds' in b ? { ...b, auto_stop_seconds: b.seconds } : b),
  z
    .object({ seconds: AutoStopSeconds.optional(), auto_stop_seconds: AutoStopSeconds })
    .refine((b) => b.seconds === undefined || b.seconds === b.auto_stop_seconds, { path: ['seconds'], message: 'disagrees with auto_stop_seconds; send one of them' }),
);

/** Seconds: default 30, clamped to 300; zero, negative or fractional values are refused. */
const Timeout = z.number().int().positive().optional();
export const EXEC_DEFAULT_TIMEOUT_S = 30;
export const EXEC_MAX_TIMEOUT_S = 300;
/** Combined output kept by sync exec; the rest is dropped and the response says `truncated`. */
export const EXEC_MAX_OUTPUT_BYTES = 1024 * 1024;

/** Linux refuses a single argument over 128 KiB, and a command is one argument to bash -c. */
export const EXEC_MAX_COMMAND_BYTES = 128 * 1024 - 1;
const utf8Length = (s: string) => new TextEncoder().encode(s).byteLength;
/** A command is a C string to the kernel: a NUL would end it early (or make bash refuse it), so it is a 400 here. */
const noNul = (s: string) => !s.includes('\0');
export const ExecBody = z.object({
  command: z
    .string()
    .min(1)
    .refine((s) => utf8Length(s) <= EXEC_MAX_COMMAND_BYTES, `must be at most ${EXEC_MAX_COMMAND_BYTES} bytes`)
    .refine(noNul, 'must not contain NUL characters'),
  timeout: Timeout,
});
/** A shell path as a computer has them: absolute, plain characters. Whether it exists is the computer's answer. */
export const ShellPath = z.string().regex(/^\/[A-Za-z0-9._\/-]{1,255}$/, 'must be an absolute path like /bin/bash');
export const ExecStreamBody = ExecBody.extend({ shell: ShellPath.default('/bin/bash') });

/** Python code travels on the process's stdin, so it is not bound by the argument limit. */
export const ExecPythonBody = z.object({
  code: z.string().min(1).max(1024 * 1024).refine(noNul, 'must not contain NUL characters (Python refuses source with them)'),
  timeout: Timeout,
});

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Limits of a computer's environment variables (docs/computers.md). Every
 * process of the computer starts with all of them, beside its command line,
 * within the kernel's room for both (a quarter of the stack limit, 2 MiB by
 * default); so the whole set is bounded, not only each value.
 */
export const ENV_LIMITS = {
  /** Variables per computer. */
  count: 128,
  /** Bytes of a name. */
  name_bytes: 256,
  /** Bytes of a value (UTF-8). */
  value_bytes: 32 * 1024,
  /** Bytes of all names and values of a computer together. */
  total_bytes: 128 * 1024,
} as const;

/** Why a whole set of variables is over the limits, or null when it is within them. */
export function envOverLimits(env: Record<string, string>): string | null {
  const names = Object.keys(env);
  if (names.length > ENV_LIMITS.count) return `${names.length} variables; at most ${ENV_LIMITS.count} per computer`;
  let total = 0;
  for (const name of names) {
    const bytes = utf8Length(name) + utf8Length(env[name]);
    if (utf8Length(name) > ENV_LIMITS.name_bytes || utf8Length(env[name]) > ENV_LIMITS.value_bytes) return `variable ${name.slice(0, 64)} is larger than a variable may be`;
    total += bytes;
  }
  if (total > ENV_LIMITS.total_bytes) return `${total} bytes of names and values; at most ${ENV_LIMITS.total_bytes} per computer`;
  return null;
}

/** A process environment is NUL-terminated strings: a value with NUL cannot reach any process (and broke every exec). */
const EnvValue = z
  .string()
  .refine((v) => utf8Length(v) <= ENV_LIMITS.value_bytes, `must be at most ${ENV_LIMITS.value_bytes} bytes`)
  .refine((v) => !v.includes('\0'), 'must not contain NUL characters');
export const EnvCreate = z.object({
  name: z.string().min(1).max(ENV_LIMITS.name_bytes).regex(ENV_NAME, 'must be letters, digits and underscores, not starting with a digit'),
  value: EnvValue,
});
export const EnvUpdate = z.object({ value: EnvValue });

/**
 * Who may open an exposed port (docs/relay.md): anyone; the computer's tenant;
 * holders of the port's access token. `tenant` and `key` are accepted for
 * `private` and `protected` (the SDKs' words) and stored as the page's.
 */
export const PORT_VISIBILITIES = ['public', 'private', 'protected'] as const;
export type PortVisibility = (typeof PORT_VISIBILITIES)[number];
export const PORT_VISIBILITY_NAMES = [...PORT_VISIBILITIES, 'tenant', 'key'] as const;
const PORT_ALIASES: Record<string, PortVisibility> = { tenant: 'private', key: 'protected' };
const PortVisibilityIn = z.enum(PORT_VISIBILITY_NAMES).transform((v): PortVisibility => PORT_ALIASES[v] ?? (v as PortVisibility));
export const PortNumber = z.number().int().min(1).max(65535);
/** `visibility` defaults to the computer's (`tenant` → private, `key` → protected); `wake_on_request` to false. */
export const PortCreate = z.object({ port: PortNumber, visibility: PortVisibilityIn.optional(), wake_on_request: z.boolean().optional() });
export const PortUpdate = z
  .object({ visibility: PortVisibilityIn.optional(), wake_on_request: z.boolean().optional() })
  .refine((b) => b.visibility !== undefined || b.wake_on_request !== undefined, 'give visibility or wake_on_request');
/** Where a minted link lands on the port's host (default `/`). */
export const PortLink = z.object({ path: z.string().regex(/^\/(?![/\\])[^\s]*$/, 'must be a path on the port\'s host, like /dashboard?tab=1').max(2048).optional() });

/** Terminal sizes as a PTY takes them. */
const TermSize = z.number().int().min(1).max(1000);
export const TerminalCreate = z.object({ cols: TermSize.default(80), rows: TermSize.default(24), shell: ShellPath.default('/bin/bash') });
export const TerminalResize = z.object({ cols: TermSize, rows: TermSize });
