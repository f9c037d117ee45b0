/**
 * One inference cluster: its members and their health, and the choice of a
 * member for each request (durable-objects/cluster/member-table.ts). Hosts'
 * reports are kept in storage, so a woken object knows its members at once;
 * requests in flight are counted in memory only, each under a lease that
 * expires, so a request whose end is never reported (its Worker went away)
 * stops counting after LEASE_MS.
 *
 * The inference route asks `pick` for a member, carries the request to it
 * over the host's relay, and reports the end with `done`
 * (durable-objects/cluster/inference-proxy.ts drives both).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import type { ServingStatus } from '../schema/protocol-models.ts';
import { applyReport, clusterState, inRotation, newMember, pick, type Member } from './cluster/member-table.ts';
import type { MemberPick } from './cluster/inference-proxy.ts';

/** A request whose end was never reported stops counting after this long. */
export const LEASE_MS = 15 * 60_000;

export interface ClusterConfig {
  id: string;
  model: string;
  host_ids: string[];
}

/** A member's report: its agent's status, or `offline` when its host's link went away. */
export type MemberReport = ServingStatus | { state: 'offline' | 'stopped'; error?: string };

interface Lease {
  host_id: string;
  at: number;
}

export class ClusterObject extends DurableObject<Env> {
  private members = new Map<string, Member>();
  private config: ClusterConfig | null = null;
  private readonly leases = new Map<string, Lease>();
  private seq = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.config = (await ctx.storage.get<ClusterConfig>('config')) ?? null;
      const stored = (await ctx.storage.get<Member[]>('members')) ?? [];
      // What was in flight before the object slept is not known any more.
      for (const m of stored) this.members.set(m.host_id, { ...m, inflight: 0 });
    });
  }

  /** Sets (or changes) the cluster's model and members; members no longer named are dropped. */
  async configure(config: ClusterConfig): Promise<void> {
    this.config = config;
    const next = new Map<string, Member>();
    for (const id of config.host_ids) next.set(id, this.members.get(id) ?? newMember(id));
    this.members = next;
    await this.ctx.storage.put('config', config);
    await this.save();
  }

  /** A host's report on its member. Reports of hosts that are not members are ignored. */
  async report(hostId: string, r: MemberReport): Promise<void> {
    const m = this.members.get(hostId);
    if (!m) return;
    const now = Date.now();
    const next = 'port' in r ? applyReport(m, { state: r.state, port: r.port, busy: r.busy, queued: r.queued, slots: r.slots, error: r.error ?? null }, now) : { ...m, state: r.state, reported_at: now, error: r.error ?? null };
    next.inflight = m.inflight;
    next.picked_at = m.picked_at;
    this.members.set(hostId, next);
    await this.save();
  }

  /** The member for the next request (none of `tried`), counted in flight under a lease; null when none is in rotation. */
  async pick(tried: string[]): Promise<MemberPick | null> {
    const now = Date.now();
    this.expireLeases(now);
    const m = pick([...this.members.values()], now, new Set(tried));
    if (!m) return null;
    m.inflight++;
    // Equal members take turns: the one picked longest ago goes next (seq breaks ties within a millisecond).
    m.picked_at = now + ++this.seq / 1e6;
    const lease = `l${this.seq}`;
    this.leases.set(lease, { host_id: m.host_id, at: now });
    return { host_id: m.host_id, port: m.port, lease };
  }

  /** The request under `lease` ended; `failed` (before its answer began, or broken off) takes its member out of rotation. */
  async done(lease: string, failed: string | null): Promise<void> {
    const l = this.leases.get(lease);
    if (!l) return;
    this.leases.delete(lease);
    const m = this.members.get(l.host_id);
    if (!m) return;
    m.inflight = Math.max(0, m.inflight - 1);
    if (failed) {
      m.failed_at = Date.now();
      m.error = failed;
      await this.save();
    }
  }

  /** The cluster's state from its members, and each member's. */
  async state(): Promise<{ status: 'active' | 'provisioning' | 'error'; members: Array<{ host_id: string; state: string; in_rotation: boolean; inflight: number; error: string | null }> }> {
    const now = Date.now();
    const members = [...this.members.values()];
    return {
      status: clusterState(members, now),
      members: members.map((m) => ({ host_id: m.host_id, state: m.state, in_rotation: inRotation(m, now), inflight: m.inflight, error: m.error })),
    };
  }

  private expireLeases(now: number): void {
    for (const [id, l] of this.leases) {
      if (now - l.at < LEASE_MS) continue;
      this.leases.delete(id);
      const m = this.members.get(l.host_id);
      if (m) m.inflight = Math.max(0, m.inflight - 1);
    }
  }

  private async save(): Promise<void> {
    await this.ctx.storage.put('members', [...this.members.values()]);
  }
}
