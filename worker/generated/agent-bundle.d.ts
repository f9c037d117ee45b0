/**
 * The host-mode agent as one file (host-agent/bundle-entry.ts bundled by
 * scripts/build-agent.mjs into agent-bundle.js, which is generated and not
 * kept in git): served by GET /opencomputers/agent.mjs.
 */
export declare const AGENT_BUNDLE: string;
/** sha256 of AGENT_BUNDLE's UTF-8 bytes, hex. */
export declare const AGENT_BUNDLE_SHA256: string;
export declare const AGENT_BUNDLE_VERSION: string;
