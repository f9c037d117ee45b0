/**
 * The tools an agent session offers its model, and how a call becomes work
 * on the host. The model is untrusted input: its arguments are parsed and
 * checked here, and a bad call comes back to it as a tool result that says
 * what was wrong (it may try again), never as a session failure. The host
 * side is the HostTools interface — jobs and file operations of the host's
 * object — so a session never has a second path to the host.
 */
import { z } from 'zod';
import { SESSION_LIMITS, type ToolName } from '../../schema/api-agents.ts';
import type { ToolCall, ToolDefinition } from '../../schema/openai.ts';

/** What failed on the host side; `host_lost` ends the session, the others go back to the model. */
export type HostFailure = { failure: 'host_lost' | 'not_found' | 'denied' | 'invalid' | 'too_large' | 'failed'; message: string };

export interface CommandResult {
  exit_code: number;
  stdout: string;
  stderr: string;
  timed_out: boolean;
  truncated: boolean;
}

/** The host, as a session uses it. Each call is bounded and honours `signal` (a cancel ends the work on the host). */
export interface HostTools {
  runCommand(a: { command: string; cwd?: string; timeout_s: number }, signal: AbortSignal): Promise<CommandResult | HostFailure>;
  readFile(a: { path: string; max_bytes: number }, signal: AbortSignal): Promise<{ content: string; size: number; truncated: boolean } | HostFailure>;
  writeFile(a: { path: string; content: string }, signal: AbortSignal): Promise<{ bytes: number } | HostFailure>;
  listDirectory(a: { path: string }, signal: AbortSignal): Promise<{ entries: Array<{ name: string; is_dir: boolean; size: number }> } | HostFailure>;
}

const Path = z.string().min(1).max(4096).refine((s) => !s.includes('\0'), 'must not contain NUL');

const ARGS = {
  run_command: z.object({
    command: z.string().min(1).max(64 * 1024),
    cwd: Path.optional(),
    timeout: z.number().int().min(1).max(SESSION_LIMITS.command_timeout_s.max).optional(),
  }),
  read_file: z.object({ path: Path }),
  write_file: z.object({ path: Path, content: z.string().max(8 * 1024 * 1024) }),
  list_directory: z.object({ path: Path.default('.') }),
} satisfies Record<ToolName, z.ZodType>;

/** The definitions sent to the model (JSON Schema parameters). */
export const TOOL_DEFINITIONS: Record<ToolName, ToolDefinition> = {
  run_command: {
    type: 'function',
    function: {
      name: 'run_command',
      description: `Run a shell command on the host (bash -c) and get its exit code and output. Runs in the user's home unless cwd says otherwise. Times out after \`timeout\` seconds (default ${SESSION_LIMITS.command_timeout_s.default}). Long output is cut in the middle.`,
      parameters: {
        type: 'object',
        properties: {
          command: { type: 'string', description: 'The command line' },
          cwd: { type: 'string', description: 'Working directory (absolute, or relative to the home directory)' },
          timeout: { type: 'integer', description: 'Seconds before the command is stopped' },
        },
        required: ['command'],
      },
    },
  },
  read_file: {
    type: 'function',
    function: {
      name: 'read_file',
      description: 'Read a text file on the host. Long files are cut.',
      parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
    },
  },
  write_file: {
    type: 'function',
    function: {
      name: 'write_file',
      description: 'Write a text file on the host, creating parent directories and replacing any file there.',
      parameters: { type: 'object', properties: { path: { type: 'string' }, content: { type: 'string' } }, required: ['path', 'content'] },
    },
  },
  list_directory: {
    type: 'function',
    function: {
      name: 'list_directory',
      description: 'List a directory on the host: names, whether each is a directory, sizes.',
      parameters: { type: 'object', properties: { path: { type: 'string', description: 'Defaults to the home directory' } } },
    },
  },
};

/** A tool call's outcome: what the model reads, and what the session's stream shows. */
export interface ToolOutcome {
  ok: boolean;
  /** The text given back to the model (capped). */
  content: string;
  /** For the event: exit code of a command, if it ran. */
  exit_code?: number;
  /** The host is gone: the session ends as host_lost. */
  host_lost?: boolean;
  /** The call was cut short by a cancel or the session's timeout. */
  aborted?: boolean;
  error?: string;
}

const isFailure = (r: object): r is HostFailure => 'failure' in r;

/** Head and tail of `text` within `max` characters, saying how much was left out. */
export function excerpt(text: string, max: number): string {
  if (text.length <= max) return text;
  const half = Math.floor((max - 64) / 2);
  return `${text.slice(0, half)}\n[… ${text.length - 2 * half} characters omitted …]\n${text.slice(text.length - half)}`;
}

/** Runs one tool call on the host, if the session allows that tool and its arguments hold. */
export async function runTool(host: HostTools, allowed: readonly ToolName[], call: ToolCall, signal: AbortSignal): Promise<ToolOutcome> {
  const name = call.function.name as ToolName;
  if (!allowed.includes(name)) return refuse(`there is no tool "${call.function.name}" in this session; the tools are ${allowed.join(', ')}`);
  let raw: unknown;
  try {
    raw = call.function.arguments.trim() === '' ? {} : JSON.parse(call.function.arguments);
  } catch {
    return refuse(`the arguments of ${name} are not valid JSON`);
  }
  const parsed = ARGS[name].safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return refuse(`bad arguments for ${name}: ${i.path.join('.') || 'arguments'}: ${i.message}`);
  }
  const cap = SESSION_LIMITS.tool_output_chars;
  try {
    switch (name) {
      case 'run_command': {
        const a = parsed.data as z.infer<typeof ARGS.run_command>;
        const r = await host.runCommand({ command: a.command, cwd: a.cwd, timeout_s: a.timeout ?? SESSION_LIMITS.command_timeout_s.default }, signal);
        if (isFailure(r)) return failed(r, signal);
        const parts = [`exit code ${r.exit_code}${r.timed_out ? ' (timed out)' : ''}`];
        if (r.stdout) parts.push(`stdout:\n${excerpt(r.stdout, Math.floor(cap * 0.7))}`);
        if (r.stderr) parts.push(`stderr:\n${excerpt(r.stderr, Math.floor(cap * 0.3))}`);
        if (r.truncated) parts.push('(output was longer than the host keeps; the middle is missing)');
        return { ok: r.exit_code === 0 && !r.timed_out, content: parts.join('\n'), exit_code: r.exit_code };
      }
      case 'read_file': {
        const a = parsed.data as z.infer<typeof ARGS.read_file>;
        const r = await host.readFile({ path: a.path, max_bytes: cap * 4 }, signal);
        if (isFailure(r)) return failed(r, signal);
        const content = excerpt(r.content, cap);
        return { ok: true, content: r.truncated || content !== r.content ? `${content}\n[file is ${r.size} bytes; cut]` : content };
      }
      case 'write_file': {
        const a = parsed.data as z.infer<typeof ARGS.write_file>;
        const r = await host.writeFile({ path: a.path, content: a.content }, signal);
        if (isFailure(r)) return failed(r, signal);
        return { ok: true, content: `wrote ${r.bytes} bytes to ${a.path}` };
      }
      case 'list_directory': {
        const a = parsed.data as z.infer<typeof ARGS.list_directory>;
        const r = await host.listDirectory({ path: a.path }, signal);
        if (isFailure(r)) return failed(r, signal);
        const lines = r.entries.map((e) => `${e.name}${e.is_dir ? '/' : ''}${e.is_dir ? '' : `\t${e.size}`}`);
        return { ok: true, content: excerpt(lines.join('\n') || '(empty)', cap) };
      }
    }
  } catch (e) {
    if (signal.aborted) return { ok: false, content: 'the call was stopped', aborted: true, error: 'stopped' };
    return { ok: false, content: `the tool failed: ${(e as Error).message}`, error: (e as Error).message };
  }
}

function refuse(message: string): ToolOutcome {
  return { ok: false, content: `error: ${message}`, error: message };
}

function failed(f: HostFailure, signal: AbortSignal): ToolOutcome {
  if (signal.aborted) return { ok: false, content: 'the call was stopped', aborted: true, error: 'stopped' };
  if (f.failure === 'host_lost') return { ok: false, content: `error: ${f.message}`, host_lost: true, error: f.message };
  return { ok: false, content: `error: ${f.message}`, error: f.message };
}
