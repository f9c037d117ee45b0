/** The agent's own version, sent in every hello so the server can tell agents apart. */
export const AGENT_VERSION = '0.1.0';
