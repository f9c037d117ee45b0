/**
 * A tenant host's part in inference clusters (protocol 1.9,
 * schema/protocol-models.ts). The HostObject remembers which clusters the
 * host serves and with which model, so an agent that reconnects (or was
 * restarted and forgot) is asked again; it passes the agent's
 * `models.status` reports to each cluster's object, and tells those clusters
 * the member is `offline` when the agent's socket goes away.
 */
import { ModelsStatus, type ServingStatus } from '../../schema/protocol-models.ts';
import type { Env } from '../../worker/env.ts';
import type { AgentLink } from '../agent-link.ts';
import type { MemberReport } from '../cluster-object.ts';

const ASSIGNED = 'models.assigned';
/** A model server may take this long to load its model before the agent answers `models.serve`. */
const SERVE_TIMEOUT_MS = 180_000;

export class HostModels {
  private assigned: Record<string, string> | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly env: Env,
    private readonly link: AgentLink,
    private readonly waitUntil: (p: Promise<unknown>) => void,
  ) {}

  private async load(): Promise<Record<string, string>> {
    this.assigned ??= (await this.storage.get<Record<string, string>>(ASSIGNED)) ?? {};
    return this.assigned;
  }

  /** The host serves `model` for the cluster from now on; a connected agent is asked at once (answers go to the cluster). */
  async serve(hostId: string, clusterId: string, model: string): Promise<void> {
    const a = await this.load();
    a[clusterId] = model;
    await this.storage.put(ASSIGNED, a);
    if (this.link.socket()) this.waitUntil(this.ask(hostId, clusterId, model));
    else await this.tell(clusterId, hostId, { state: 'offline', error: "the host's agent is not connected" });
  }

  /** The host no longer serves the cluster; its agent lets the model go (a managed server no cluster needs stops). */
  async unserve(clusterId: string): Promise<void> {
    const a = await this.load();
    if (!(clusterId in a)) return;
    delete a[clusterId];
    await this.storage.put(ASSIGNED, a);
    if (this.link.socket()) this.waitUntil(this.link.request('models.unserve', { cluster_id: clusterId }, 30_000));
  }

  /** After each welcome: the agent is asked for every model it serves (a restarted agent has forgotten them). */
  async agentResumed(hostId: string): Promise<void> {
    const a = await this.load();
    for (const [clusterId, model] of Object.entries(a)) this.waitUntil(this.ask(hostId, clusterId, model));
  }

  /** The agent's socket is gone: its clusters take the member out of rotation now rather than when its reports go stale. */
  async agentGone(hostId: string): Promise<void> {
    const a = await this.load();
    await Promise.all(Object.keys(a).map((c) => this.tell(c, hostId, { state: 'offline', error: "the host's agent disconnected" })));
  }

  /** True for the agent messages this module takes (`models.status`). */
  static handles(raw: unknown): boolean {
    return (raw as { type?: unknown } | null)?.type === 'models.status';
  }

  /** A `models.status` report: each status goes to its cluster, if the host still serves it. Malformed reports are dropped. */
  async onStatus(hostId: string, raw: unknown): Promise<void> {
    const parsed = ModelsStatus.safeParse(raw);
    if (!parsed.success) return;
    const a = await this.load();
    await Promise.all(parsed.data.statuses.filter((s) => s.cluster_id in a).map((s) => this.tell(s.cluster_id, hostId, s)));
  }

  private async ask(hostId: string, clusterId: string, model: string): Promise<void> {
    const r = await this.link.request('models.serve', { cluster_id: clusterId, model }, SERVE_TIMEOUT_MS);
    const status: MemberReport = r.ok ? (r.value satisfies ServingStatus) : { state: 'error', port: 0, cluster_id: clusterId, model, managed: false, error: r.message };
    await this.tell(clusterId, hostId, status);
  }

  private async tell(clusterId: string, hostId: string, r: MemberReport): Promise<void> {
    try {
      await this.env.CLUSTER.get(this.env.CLUSTER.idFromName(clusterId)).report(hostId, r);
    } catch {
      /* the cluster hears again at the next report */
    }
  }
}
