/** Why a relay target could not be reached, as a reset code the server turns into an answer (502, 503…). */
import type { ResetCode } from '../../schema/relay.ts';

/** Socket error codes and what they mean for a relayed connection. */
const ERRNO: Record<string, ResetCode> = {
  ECONNREFUSED: 'refused',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ETIMEDOUT: 'timeout',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'unreachable',
  EADDRNOTAVAIL: 'unreachable',
};

export class RelayTargetError extends Error {
  readonly code: ResetCode;
  constructor(code: ResetCode, message: string) {
    super(message);
    this.code = code;
  }

  /** Any error as a RelayTargetError: socket errors by their errno, the rest as `error`. */
  static from(err: unknown): RelayTargetError {
    if (err instanceof RelayTargetError) return err;
    const errno = (err as { code?: unknown })?.code;
    const message = err instanceof Error ? err.message : String(err);
    return new RelayTargetError((typeof errno === 'string' && ERRNO[errno]) || 'error', message);
  }
}
