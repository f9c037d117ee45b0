/**
 * What a host serves for inference clusters, and how healthy it is. Each
 * cluster that names this host asks for a model; the host answers with a
 * loopback port the relay can reach. Two ways to serve:
 *  - a server already on the host (`--model-server http://127.0.0.1:11434`,
 *    Ollama or llama.cpp's server): used as it is, never started or stopped;
 *  - otherwise a managed server per model, started on first need, shared by
 *    the clusters serving that model, stopped when the last one lets go, and
 *    restarted (with backoff) if it dies.
 * Health is probed on a timer; every change of a cluster's state is
 * reported, so the control plane takes an unhealthy member out of rotation.
 */
import { ManagedModelServer } from './managed-server.ts';
import { probeModelServer, type ModelHealth } from './health.ts';
import type { ServingStatus } from '../../schema/protocol-models.ts';

export type { ServingStatus };

export type ServingState = ServingStatus['state'];

export interface ServingConfig {
  modelsDir: string;
  /** An existing server to use instead of starting one: a loopback base URL. */
  externalUrl?: string;
  slots?: number;
  threads?: number;
  contextSize?: number;
  /** Between health probes. */
  healthIntervalMs?: number;
  /** Waits before restarting a managed server that died (the last repeats). */
  restartDelaysMs?: number[];
}

interface Backend {
  model: string;
  clusters: Set<string>;
  server: ManagedModelServer | null;
  /** Base URL once known. */
  base: string | null;
  health: ModelHealth | null;
  state: ServingState;
  error?: string;
  restarts: number;
  starting: Promise<void> | null;
  stopped: boolean;
  /** When its clusters were last told its status (ms). */
  reportedAt: number;
}

/** An unchanged status is reported again after this long (well inside the cluster's REPORT_STALE_MS). */
export const REPORT_AGAIN_MS = 3_000;

/** The loopback port of an external server's URL; throws when it is not on this host's loopback. */
export function loopbackPort(url: string): number {
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) {
    throw new Error(`--model-server must be a server on this host's loopback (127.0.0.1, localhost or [::1]), not ${u.hostname}: clusters reach it through the agent, never over the network`);
  }
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
}

export class ModelServing {
  private readonly backends = new Map<string, Backend>();
  private readonly clusterModel = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly cfg: ServingConfig;
  private readonly log: (s: string) => void;
  private readonly onStatus: (s: ServingStatus) => void;

  constructor(cfg: ServingConfig, log: (s: string) => void, onStatus: (s: ServingStatus) => void) {
    this.cfg = cfg;
    this.log = log;
    this.onStatus = onStatus;
    if (cfg.externalUrl) loopbackPort(cfg.externalUrl);
  }

  /** Starts serving `model` for `clusterId`; resolves with its status once ready or failed. */
  async serve(clusterId: string, model: string): Promise<ServingStatus> {
    const previous = this.clusterModel.get(clusterId);
    if (previous && previous !== model) await this.unserve(clusterId);
    this.clusterModel.set(clusterId, model);
    let b = this.backends.get(model);
    if (!b) {
      b = { model, clusters: new Set(), server: null, base: null, health: null, state: 'starting', restarts: 0, starting: null, stopped: false, reportedAt: 0 };
      this.backends.set(model, b);
    }
    b.clusters.add(clusterId);
    if (!b.base && !b.starting) b.starting = this.bringUp(b);
    this.report(b, clusterId);
    await b.starting;
    this.startTimer();
    return this.statusOf(b, clusterId);
  }

  /** Stops serving for `clusterId`; a managed server no cluster needs any more is stopped. */
  async unserve(clusterId: string): Promise<void> {
    const model = this.clusterModel.get(clusterId);
    if (!model) return;
    this.clusterModel.delete(clusterId);
    const b = this.backends.get(model);
    if (!b) return;
    b.clusters.delete(clusterId);
    if (b.clusters.size) return;
    this.backends.delete(model);
    b.stopped = true;
    await b.starting?.catch(() => {});
    if (b.server) {
      this.log(`model ${model}: no cluster needs it; stopping the server this agent started`);
      await b.server.stop();
    }
  }

  /** Every served cluster's status now. */
  statuses(): ServingStatus[] {
    const out: ServingStatus[] = [];
    for (const b of this.backends.values()) for (const c of b.clusters) out.push(this.statusOf(b, c));
    return out;
  }

  /** The pid of the managed server of `model`, if one runs. */
  pidOf(model: string): number | undefined {
    return this.backends.get(model)?.server?.pid;
  }

  /** Probes every backend now (the timer does this every interval). */
  async probeAll(): Promise<void> {
    await Promise.all([...this.backends.values()].map((b) => this.probe(b)));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const c of [...this.clusterModel.keys()]) await this.unserve(c);
  }

  private async bringUp(b: Backend): Promise<void> {
    try {
      if (this.cfg.externalUrl) {
        b.base = this.cfg.externalUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
      } else {
        const server = new ManagedModelServer({ model: b.model, modelsDir: this.cfg.modelsDir, slots: this.cfg.slots, threads: this.cfg.threads, contextSize: this.cfg.contextSize });
        this.log(`model ${b.model}: starting a model server`);
        b.base = await server.start();
        b.server = server;
        server.onExit((code, signal) => this.onServerExit(b, server, code, signal));
        if (b.stopped) await server.stop();
      }
      await this.probe(b);
    } catch (e) {
      b.state = 'error';
      b.error = (e as Error).message;
      b.base = null;
      this.log(`model ${b.model}: ${b.error}`);
      this.reportAll(b);
    } finally {
      b.starting = null;
    }
  }

  private onServerExit(b: Backend, server: ManagedModelServer, code: number | null, signal: NodeJS.Signals | null): void {
    if (b.stopped || b.server !== server) return;
    b.server = null;
    b.base = null;
    b.state = 'unhealthy';
    const delays = this.cfg.restartDelaysMs ?? [1_000, 5_000, 30_000];
    const wait = delays[Math.min(b.restarts, delays.length - 1)];
    b.restarts++;
    b.error = `the model server exited (${signal ?? `code ${code}`}): ${server.lastError || 'no message'}; restarting in ${Math.round(wait / 1000)} s`;
    this.log(`model ${b.model}: ${b.error}`);
    this.reportAll(b);
    setTimeout(() => {
      if (!b.stopped && !b.base && !b.starting) b.starting = this.bringUp(b);
    }, wait).unref();
  }

  private async probe(b: Backend): Promise<void> {
    if (!b.base) return;
    const h = await probeModelServer(b.base, b.model);
    const state: ServingState = h.healthy ? 'ready' : 'unhealthy';
    const changed = state !== b.state || h.error !== b.error || h.busy !== b.health?.busy || h.queued !== b.health?.queued;
    b.health = h;
    b.state = state;
    b.error = h.error;
    if (h.healthy) b.restarts = 0;
    // Unchanged members are reported again now and then: the cluster takes a silent member for a lost one.
    if (changed || Date.now() - b.reportedAt >= REPORT_AGAIN_MS) this.reportAll(b);
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.probeAll(), this.cfg.healthIntervalMs ?? 2_000);
    this.timer.unref();
  }

  private statusOf(b: Backend, clusterId: string): ServingStatus {
    const port = b.base ? Number(new URL(b.base).port || 80) : 0;
    const s: ServingStatus = { cluster_id: clusterId, model: b.model, state: b.state, port, managed: !this.cfg.externalUrl };
    if (b.health?.busy !== undefined) s.busy = b.health.busy;
    if (b.health?.queued !== undefined) s.queued = b.health.queued;
    if (b.health?.slots !== undefined) s.slots = b.health.slots;
    if (b.error) s.error = b.error;
    return s;
  }

  private report(b: Backend, clusterId: string): void {
    this.onStatus(this.statusOf(b, clusterId));
  }

  private reportAll(b: Backend): void {
    b.reportedAt = Date.now();
    for (const c of b.clusters) this.report(b, c);
  }
}
