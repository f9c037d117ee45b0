/**
 * An inference cluster's members as a pure table: what each host last said
 * about its model server, how many requests the cluster has in flight on it,
 * and the rules built on that — which members are in rotation, and which one
 * takes the next request (the least busy; ties go to the one picked least
 * recently, so equal members share the load in turn).
 *
 * A member is in rotation only while its host says its server is `ready` and
 * no request failed on it since. A failed request takes it out at once; the
 * next healthy report (the agent probes every ~2 s) brings it back. A member
 * whose host stopped reporting for REPORT_STALE_MS is out too — so a host that
 * vanishes without a word leaves within that bound.
 */
export type MemberState = 'starting' | 'ready' | 'unhealthy' | 'error' | 'offline' | 'stopped';

export interface Member {
  host_id: string;
  state: MemberState;
  /** Loopback port of the model server on the host. */
  port: number;
  /** Requests this cluster has in flight on it. */
  inflight: number;
  /** What the server itself said (all its clients, not only ours). */
  busy: number;
  queued: number;
  slots: number;
  /** When the host last reported (ms). */
  reported_at: number;
  /** When a request last failed on it (ms); cleared by a healthy report after it. */
  failed_at: number | null;
  /** When it was last picked (ms), for taking turns. */
  picked_at: number;
  error: string | null;
}

/** A member whose host has not reported for this long is out of rotation. */
export const REPORT_STALE_MS = 8_000;

export function newMember(hostId: string): Member {
  return { host_id: hostId, state: 'starting', port: 0, inflight: 0, busy: 0, queued: 0, slots: 1, reported_at: 0, failed_at: null, picked_at: 0, error: null };
}

export interface HealthReport {
  state: MemberState;
  port: number;
  busy?: number;
  queued?: number;
  slots?: number;
  error?: string | null;
}

/** The member after its host's report. A healthy report lifts an earlier request failure. */
export function applyReport(m: Member, r: HealthReport, now: number): Member {
  return {
    ...m,
    state: r.state,
    port: r.port,
    busy: r.busy ?? m.busy,
    queued: r.queued ?? m.queued,
    slots: r.slots ?? m.slots,
    reported_at: now,
    failed_at: r.state === 'ready' ? null : m.failed_at,
    error: r.state === 'ready' ? null : (r.error ?? m.error),
  };
}

export function inRotation(m: Member, now: number): boolean {
  return m.state === 'ready' && m.port > 0 && m.failed_at === null && now - m.reported_at < REPORT_STALE_MS;
}

/** How loaded a member is: requests per slot, ours in flight or the server's own count, whichever is more. */
export function load(m: Member): number {
  return (Math.max(m.inflight, m.busy) + m.queued) / Math.max(1, m.slots);
}

/** The member to take the next request, skipping `exclude` (already tried); null when none is in rotation. */
export function pick(members: Member[], now: number, exclude: ReadonlySet<string> = new Set()): Member | null {
  let best: Member | null = null;
  for (const m of members) {
    if (exclude.has(m.host_id) || !inRotation(m, now)) continue;
    if (!best || load(m) < load(best) || (load(m) === load(best) && m.picked_at < best.picked_at)) best = m;
  }
  return best;
}

/** The cluster's status from its members: active while any serves, provisioning while any is starting, error when all failed. */
export function clusterState(members: Member[], now: number): 'active' | 'provisioning' | 'error' {
  if (members.some((m) => inRotation(m, now))) return 'active';
  if (members.some((m) => m.state === 'starting')) return 'provisioning';
  return 'error';
}
