/** Gating features on the protocol the attached agent speaks. */
import { fail, type Result } from '../schema/errors.ts';
import { speaks } from '../schema/protocol.ts';
import type { AgentLink } from './agent-link.ts';

/** A refusal when the attached agent is older than `1.minor`; null when it is not (or none is attached: the request will say so). */
export function agentTooOld(link: AgentLink, minor: number, what: string): Result<never> | null {
  const v = link.protocol();
  return v && !speaks(v, minor) ? fail('AGENT_ERROR', `the computer's host agent is too old for ${what} (it needs protocol 1.${minor}); upgrade hangar-agent on its host`) : null;
}
