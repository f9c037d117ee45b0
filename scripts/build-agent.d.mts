/** Bundles the host-mode agent into worker/generated/agent-bundle.js; see build-agent.mjs. */
export declare function buildAgentBundle(): Promise<{ bytes: number; sha256: string }>;
