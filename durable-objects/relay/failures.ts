/** What a client is told when a relayed connection cannot be made or breaks before its answer. */
import { ApiError } from '../../schema/errors.ts';
import type { StreamReset } from './relay-stream.ts';

/** `where` names the target for people: "port 3000 of computer my-app-1a2b3c4d". */
export function relayFailure(reset: StreamReset, where: string): ApiError {
  switch (reset.code) {
    case 'refused':
      return new ApiError('PORT_NOT_LISTENING', `nothing is listening on ${where}; start a server there (listening on 0.0.0.0 or 127.0.0.1) and try again`);
    case 'timeout':
      return new ApiError('UPSTREAM_TIMEOUT', `${where} did not answer in time`);
    case 'unreachable':
    case 'unsupported':
      return new ApiError('AGENT_UNAVAILABLE', `${where} cannot be reached: ${reset.message}`);
    case 'limit':
      return new ApiError('RATE_LIMITED', `too many open connections to ${where}; try again when some have closed`);
    default:
      return new ApiError('UPSTREAM_ERROR', `the connection to ${where} failed: ${reset.message}`);
  }
}
