/**
 * How a computer is isolated on its host — which host-agent driver makes it:
 *  - `sandbox`: Linux namespaces and cgroups on the host's kernel;
 *  - `vm`: a QEMU microVM with its own kernel (KVM, or software emulation).
 * The computer object shows it as `isolation`; create accepts it; a host's
 * agent says which it offers in its hello (its `drivers`).
 */
export const ISOLATIONS = ['sandbox', 'vm'] as const;
export type Isolation = (typeof ISOLATIONS)[number];

/** What computers get when neither the request nor the operator (DEFAULT_ISOLATION) says. */
export const DEFAULT_ISOLATION: Isolation = 'sandbox';

export const isIsolation = (s: string): s is Isolation => (ISOLATIONS as readonly string[]).includes(s);
