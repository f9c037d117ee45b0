/**
 * The wire protocol between the Durable Objects and host-agent.
 *
 * Two kinds of WebSocket, both dialed by the agent:
 *  - the host socket (HostObject): hello/welcome, heartbeats, and "attach"
 *    orders telling the agent which computers it serves;
 *  - one computer socket per computer (ComputerObject): lifecycle and exec
 *    requests, each with an `id` answered by exactly one `result`.
 * Every message is JSON validated with these schemas on both ends: the agent
 * is a remote process, not trusted code, and the server is remote to the agent.
 *
 * Versions (major changes break old agents; minor ones only add):
 *  - 1.0  hello/welcome, attach/detach, computer lifecycle, sync exec, metrics.
 */
import { z } from 'zod';
import { SIZE_NAMES } from './sizes.ts';

export const PROTOCOL = { major: 1, minor: 0 } as const;

const Version = z.object({ major: z.number().int().nonnegative(), minor: z.number().int().nonnegative() });
const Uuid = z.uuid();

/** What the agent needs to build and boot a computer. Env values arrive decrypted. */
export const ComputerSpec = z.object({
  id: Uuid,
  name: z.string(),
  template: z.string(),
  size: z.enum(SIZE_NAMES),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  selected_apps: z.array(z.string()),
  env: z.record(z.string(), z.string()),
});
export type ComputerSpec = z.infer<typeof ComputerSpec>;

/** A computer's state as the agent sees it on its disk and in its process table. */
export const ActualState = z.enum(['running', 'stopped', 'absent']);
export type ActualState = z.infer<typeof ActualState>;

// ---------------------------------------------------------------- host socket

export const AgentHello = z.object({
  type: z.literal('hello'),
  protocol: Version,
  agent_version: z.string().max(64),
  drivers: z.array(z.string().max(32)).max(8),
  hostname: z.string().max(255),
  cpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  computers: z.array(z.object({ id: Uuid, state: ActualState })).max(10_000),
});

export const AgentHeartbeat = z.object({
  type: z.literal('heartbeat'),
  load1: z.number().nonnegative(),
  memory_used_mb: z.number().nonnegative(),
  computers_running: z.number().int().nonnegative(),
});

export const HostAgentMessage = z.discriminatedUnion('type', [AgentHello, AgentHeartbeat]);
export type HostAgentMessage = z.infer<typeof HostAgentMessage>;

export const Welcome = z.object({
  type: z.literal('welcome'),
  host_id: z.string(),
  protocol: Version,
  heartbeat_interval_ms: z.number().int().positive(),
  metrics_interval_ms: z.number().int().positive(),
  /** Computers this host serves; the agent opens a computer socket for each. */
  computers: z.array(Uuid),
});

export const AttachOrder = z.object({ type: z.literal('computer.attach'), computer_id: Uuid });
export const DetachOrder = z.object({ type: z.literal('computer.detach'), computer_id: Uuid });

export const HostServerMessage = z.discriminatedUnion('type', [Welcome, AttachOrder, DetachOrder]);
export type HostServerMessage = z.infer<typeof HostServerMessage>;

// ------------------------------------------------------------ computer socket

const RequestId = z.string().min(1).max(64);

export const ExecRunParams = z.object({
  command: z.string(),
  timeout_s: z.number().int().positive().max(300),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  /** Written to the process's stdin, which is then closed; absent means /dev/null. */
  stdin: z.string().optional(),
  /** Output beyond this many bytes is dropped and the result says `truncated`. */
  max_output_bytes: z.number().int().positive(),
});
export type ExecRunParams = z.infer<typeof ExecRunParams>;

export const ExecRunResult = z.object({
  output: z.string(),
  exit_code: z.number().int(),
  timed_out: z.boolean(),
  truncated: z.boolean(),
  duration_ms: z.number().nonnegative(),
});
export type ExecRunResult = z.infer<typeof ExecRunResult>;

export const LifecycleResult = z.object({ state: ActualState });
export type LifecycleResult = z.infer<typeof LifecycleResult>;

/** Requests the ComputerObject sends; each is answered by one `result` with the same id. */
export const ComputerRequest = z.discriminatedUnion('type', [
  z.object({ type: z.literal('computer.provision'), id: RequestId, spec: ComputerSpec, clone_from: Uuid.optional() }),
  z.object({ type: z.literal('computer.start'), id: RequestId, spec: ComputerSpec }),
  z.object({ type: z.literal('computer.stop'), id: RequestId }),
  z.object({ type: z.literal('computer.destroy'), id: RequestId }),
  z.object({ type: z.literal('computer.resize'), id: RequestId, spec: ComputerSpec }),
  z.object({ type: z.literal('computer.env'), id: RequestId, env: z.record(z.string(), z.string()) }),
  z.object({ type: z.literal('exec.run'), id: RequestId, params: ExecRunParams }),
]);
export type ComputerRequest = z.infer<typeof ComputerRequest>;
export type ComputerRequestType = ComputerRequest['type'];

/** Result schema for each request type, checked by the ComputerObject on arrival. */
export const RESULT_SCHEMAS = {
  'computer.provision': LifecycleResult,
  'computer.start': LifecycleResult,
  'computer.stop': LifecycleResult,
  'computer.destroy': LifecycleResult,
  'computer.resize': LifecycleResult,
  'computer.env': LifecycleResult,
  'exec.run': ExecRunResult,
} as const satisfies Record<ComputerRequestType, z.ZodType>;

export const AgentErrorCode = z.enum(['NOT_RUNNING', 'NOT_FOUND', 'BAD_REQUEST', 'FAILED']);

export const ResultMessage = z.discriminatedUnion('ok', [
  z.object({ type: z.literal('result'), id: RequestId, ok: z.literal(true), data: z.unknown() }),
  z.object({
    type: z.literal('result'),
    id: RequestId,
    ok: z.literal(false),
    error: z.object({ code: AgentErrorCode, message: z.string().max(4096) }),
  }),
]);

export const Attached = z.object({
  type: z.literal('attached'),
  computer_id: Uuid,
  protocol: Version,
  agent_version: z.string().max(64),
  state: ActualState,
});

export const MetricsSample = z.object({
  type: z.literal('metrics'),
  ts: z.number().int().positive(),
  cpu_percent: z.number().nonnegative(),
  memory_percent: z.number().nonnegative(),
  memory_bytes: z.number().nonnegative(),
});

/** The computer stopped without being asked (its init died, it ran out of memory). */
export const ComputerExited = z.object({ type: z.literal('computer.exited'), reason: z.string().max(1024) });

export const ComputerAgentMessage = z.union([ResultMessage, Attached, MetricsSample, ComputerExited]);
export type ComputerAgentMessage = z.infer<typeof ComputerAgentMessage>;

/** Path the agent dials for a computer socket; the host socket is AGENT_HOST_PATH. */
export const AGENT_HOST_PATH = '/agent/v1/connect';
export const agentComputerPath = (computerId: string) => `/agent/v1/computers/${computerId}/connect`;
