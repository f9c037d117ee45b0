/** Headers by which a route hands a tenant host's object a client's stream or socket (job stream, events, terminal, file bytes). */

/** Which operation: `events`, `job-stream`, `terminal`, `fs-download`, `fs-upload`. */
export const HOST_OP_HEADER = 'x-hangar-host-op';
/** The API key behind the request (empty: none), so revoking the key ends what it opened. */
export const CREDENTIAL_HEADER = 'x-hangar-credential-id';
