/**
 * The host-mode agent's side of protocol 1.9: `models.serve` and
 * `models.unserve` requests answered with `result` messages, and
 * `models.status` sent on every change and after each (re)connect. The host
 * session hands it messages whose type starts with `models.`; everything is
 * validated here, and a request the agent cannot serve is an error result,
 * never a crash.
 */
import { MODELS_MINOR, ModelsRequest, type ServingStatus } from '../../schema/protocol-models.ts';
import { ModelServing, type ServingConfig } from './model-serving.ts';

type Send = (msg: object) => void;

export class ModelsHandler {
  readonly serving: ModelServing;
  private send: Send;

  constructor(cfg: ServingConfig, send: Send, log: (s: string) => void) {
    this.send = send;
    this.serving = new ModelServing(cfg, log, (s) => this.report([s]));
  }

  static readonly minor = MODELS_MINOR;

  /** True for the messages this handler takes. */
  static handles(msg: { type?: unknown }): boolean {
    return typeof msg.type === 'string' && msg.type.startsWith('models.');
  }

  /** After the host socket (re)connects: the server learns every served cluster's state again. */
  connected(): void {
    this.report(this.serving.statuses());
  }

  async onMessage(raw: unknown): Promise<void> {
    const parsed = ModelsRequest.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { id?: unknown })?.id;
      if (typeof id === 'string') this.send({ type: 'result', id, ok: false, error: { code: 'BAD_REQUEST', message: `malformed ${(raw as { type?: string }).type}: ${parsed.error.issues[0].message}` } });
      return;
    }
    const req = parsed.data;
    try {
      const data = req.type === 'models.serve' ? await this.serving.serve(req.cluster_id, req.model) : (await this.serving.unserve(req.cluster_id), {});
      this.send({ type: 'result', id: req.id, ok: true, data });
    } catch (e) {
      this.send({ type: 'result', id: req.id, ok: false, error: { code: 'FAILED', message: (e as Error).message.slice(0, 4000) } });
    }
  }

  async close(): Promise<void> {
    await this.serving.close();
  }

  private report(statuses: ServingStatus[]): void {
    if (statuses.length) this.send({ type: 'models.status', statuses });
  }
}
