/** Request bodies of the public API (computers, exec, env vars, ports), validated at the edge. */
import { z } from 'zod';
import { SIZE_NAMES } from './sizes.ts';
import { Resolution } from './desktop.ts';
import { StringMap } from './string-map.ts';

/** Templates a computer can be created from. */
export const TEMPLATES = ['miosa-desktop'] as const;

/** Apps `selected_apps` may name; each is installed into the computer at provisioning. */
export const APPS = ['nodejs'] as const;

const Name = z.string().trim().min(1).max(128);

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
  selected_apps: z.array(z.enum(APPS, { message: `unknown app; available: ${APPS.join(', ')}` })).max(16).default([]),
  region: z.string().min(1).max(64).optional(),
  auto_stop: z.number().int().min(0).max(30 * 86_400).optional(),
  workspace_id: z.uuid().optional(),
  workspace_slug: z.string().min(1).max(64).optional(),
  workspace_name: z.string().min(1).max(128).optional(),
  project_id: z.uuid().optional(),
  project_slug: z.string().min(1).max(64).optional(),
  project_name: z.string().min(1).max(128).optional(),
  external_workspace_id: z.string().max(255).optional(),
  external_user_id: z.string().max(255).optional(),
  external_project_id: z.string().max(255).optional(),
  metadata: StringMap.optional(),
  visibility: ComputerVisibility.optional(),
  /** The desktop's screen, WIDTHxHEIGHT (an extension; default 1280x720). */
  resolution: Resolution.optional(),
});
export type CreateComputer = z.infer<typeof CreateComputer>;

/** PATCH/PUT: only the fields sent change; `metadata` replaces the whole map. */
export const UpdateComputer = z.object({
  agent_session_id: z.string().max(255).nullable().optional(),
  name: Name.optional(),
  metadata: StringMap.optional(),
  visibility: ComputerVisibility.optional(),
});

export const CloneComputer = z.object({ name: Name.optional() });
export const ResizeComputer = z.object({ size: z.enum(SIZE_NAMES) });
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
export const ExecBody = z.object({
  command: z
    .string()
    .min(1)
    .refine((s) => utf8Length(s) <= EXEC_MAX_COMMAND_BYTES, `must be at most ${EXEC_MAX_COMMAND_BYTES} bytes`),
  timeout: Timeout,
});
/** A shell path as a computer has them: absolute, plain characters. Whether it exists is the computer's answer. */
export const ShellPath = z.string().regex(/^\/[A-Za-z0-9._\/-]{1,255}$/, 'must be an absolute path like /bin/bash');
export const ExecStreamBody = ExecBody.extend({ shell: ShellPath.default('/bin/bash') });

/** Python code travels on the process's stdin, so it is not bound by the argument limit. */
export const ExecPythonBody = z.object({ code: z.string().min(1).max(1024 * 1024), timeout: Timeout });

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A process environment is NUL-terminated strings: a value with NUL cannot reach any process (and broke every exec). */
const EnvValue = z.string().max(32 * 1024).refine((v) => !v.includes('\0'), 'must not contain NUL characters');
export const EnvCreate = z.object({
  name: z.string().min(1).max(256).regex(ENV_NAME, 'must be letters, digits and underscores, not starting with a digit'),
  value: EnvValue,
});
export const EnvUpdate = z.object({ value: EnvValue });

export const PORT_VISIBILITIES = ['public', 'private', 'protected'] as const;
export const PortNumber = z.number().int().min(1).max(65535);
export const PortCreate = z.object({ port: PortNumber, visibility: z.enum(PORT_VISIBILITIES) });
export const PortUpdate = z.object({ visibility: z.enum(PORT_VISIBILITIES) });

/** Terminal sizes as a PTY takes them. */
const TermSize = z.number().int().min(1).max(1000);
export const TerminalCreate = z.object({ cols: TermSize.default(80), rows: TermSize.default(24), shell: ShellPath.default('/bin/bash') });
export const TerminalResize = z.object({ cols: TermSize, rows: TermSize });
