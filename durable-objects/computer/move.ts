/**
 * Moving a stopped computer to a host in another region, offline. The object
 * persists `moving` and the target host (record and D1) first; the target
 * host's agent is then ordered to open a second computer socket (the `target`
 * link), gets ready to import, and the source agent exports the disk through
 * the DiskRelay. Only when the target has verified and placed the disk does
 * the computer's record point at the target (D1 first, then the object); the
 * source's copy is destroyed after that, never before. Any failure before that
 * point calls the transfer off on both agents, removes the target's partial
 * copy and leaves the computer stopped where it was.
 *
 * An object restarted mid-move finds `moving` with no move running; when an
 * agent attaches, `recover` finishes the move if D1 already points at the
 * target, and rolls it back otherwise.
 */
import { fail, ok, type ErrorCode, type Result } from '../../schema/errors.ts';
import { ComputerAgentMessage, speaks } from '../../schema/protocol.ts';
import type { Env } from '../../worker/env.ts';
import { isoNow } from '../../worker/http/ids.ts';
import type { ComputerObject } from '../computer-object.ts';
import { DiskRelay } from './disk-relay.ts';
import { mirrorMemoryKept } from './record.ts';
import { REFUSAL, transition, type Status } from './state-table.ts';

const ATTACH_MS = 30_000;
const IMPORT_READY_MS = 20 * 60_000; // the target may build its template first
const EXPORT_MS = 12 * 3600_000; // a whole disk; a stalled transfer ends far sooner (STALL_MS)
const IMPORT_DONE_MS = 30 * 60_000;
const DESTROY_MS = 120_000;
const REATTACH_MS = 15_000;
/** Protocol minor version that carries computer.export/import. */
const MOVE_MINOR = 2;

/** Close codes the object uses on agent sockets when a move ends; the agent redials and the route decides where it lands. */
export const CLOSE_MOVED = 4001;
export const CLOSE_MOVE_OFF = 4004;

export interface MoveTarget {
  host_id: string;
  region: string;
}

export class Mover {
  private relay: DiskRelay | null = null;
  /** The move under way in this object (until its last step, commit or rollback, is done). */
  private running: Promise<unknown> | null = null;
  private committing = false;

  constructor(
    private readonly obj: ComputerObject,
    private readonly env: Env,
  ) {}

  get active(): boolean {
    return this.running !== null;
  }

  /** The move itself; answers once the computer lives on the target, or once it is stopped where it was. */
  run(target: MoveTarget): Promise<Result<Status>> {
    if (this.running) return Promise.resolve(fail('INVALID_STATE_TRANSITION', REFUSAL.move));
    const p = this.runOnce(target).finally(() => (this.running = null));
    this.running = p;
    return p;
  }

  private async runOnce(target: MoveTarget): Promise<Result<Status>> {
    const obj = this.obj;
    const rec = obj.record;
    if (!rec || !transition(rec.status, 'move')) return fail('INVALID_STATE_TRANSITION', REFUSAL.move);
    if (!obj.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    if (!speaksMove(obj.link.protocol())) return fail('AGENT_ERROR', "the computer's host agent is too old to move computers (it needs protocol 1.2)");
    // Persisted before anything happens elsewhere: the status, and which host may connect as the target.
    rec.moving_to_host_id = target.host_id;
    if (!(await obj.apply('move'))) {
      await obj.save({ moving_to_host_id: undefined });
      return fail('INVALID_STATE_TRANSITION', REFUSAL.move);
    }
    await this.env.DB.prepare('UPDATE computers SET moving_to_host_id = ? WHERE id = ?').bind(target.host_id, rec.id).run();
    const relay = new DiskRelay(crypto.randomUUID().replaceAll('-', '').slice(0, 24), obj.link, obj.target);
    this.relay = relay;
    let r: Result<true>;
    try {
      r = await this.transfer(target, relay);
    } catch (e) {
      r = fail('AGENT_ERROR', `moving failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!r.ok) {
      await this.rollback(target.host_id, relay);
      return r;
    }
    await this.commit(target, relay);
    return ok(obj.record?.status ?? 'stopped');
  }

  /** Brings the target in, relays the disk and has the target verify it; commits D1 when all went well. */
  private async transfer(target: MoveTarget, relay: DiskRelay): Promise<Result<true>> {
    const obj = this.obj;
    const id = obj.record!.id;
    const step = <T>(p: Promise<Result<T>>, who: string) => this.step(p, who, relay);
    if (!(await this.host(target.host_id).attach(id))) return fail('AGENT_UNAVAILABLE', "the target host's agent is not connected; try again shortly");
    const attached = await step(obj.target.whenAttached(ATTACH_MS).then((ws) => (ws ? ok(ws) : fail('AGENT_UNAVAILABLE', 'it did not connect within 30 s'))), 'target host');
    if (!attached.ok) return attached;
    if (!speaksMove(obj.target.protocol())) return fail('AGENT_ERROR', "the target host's agent is too old to take computers (it needs protocol 1.2)");
    const spec = await obj.spec();
    const ready = await step(obj.target.request('computer.import', { transfer_id: relay.id, spec }, IMPORT_READY_MS), 'target host');
    if (!ready.ok) return ready;
    relay.watch();
    const digest = await step(obj.link.request('computer.export', { transfer_id: relay.id }, EXPORT_MS), 'source host');
    if (!digest.ok) return digest;
    if (digest.value.bytes !== relay.relayed) {
      return fail('AGENT_ERROR', `moving failed: the source host reports ${digest.value.bytes} disk bytes but sent ${relay.relayed}`);
    }
    relay.end(false);
    const placed = await step(obj.target.request('computer.import_done', { transfer_id: relay.id, spec, ...digest.value }, IMPORT_DONE_MS), 'target host');
    if (!placed.ok) return placed;
    if (placed.value.state !== 'stopped') return fail('AGENT_ERROR', `moving failed: the target host reports the computer ${placed.value.state} after the import`);
    // The point of no return: D1 is what routes agents and lists, so it moves first.
    await this.env.DB.prepare('UPDATE computers SET host_id = ?, region = ?, moving_to_host_id = NULL, updated_at = ? WHERE id = ?')
      .bind(target.host_id, target.region, isoNow(), id)
      .run();
    this.committing = true;
    return ok(true);
  }

  /** One step's result, unless the transfer breaks first; agent errors become AGENT_ERROR naming the side. */
  private async step<T>(p: Promise<Result<T>>, who: string, relay: DiskRelay): Promise<Result<T>> {
    const r = await Promise.race([p, relay.broken.then((reason) => fail<T>('AGENT_ERROR', reason))]);
    if (r.ok) return r;
    const code: ErrorCode = r.code === 'AGENT_UNAVAILABLE' ? 'AGENT_UNAVAILABLE' : 'AGENT_ERROR';
    return fail(code, r.message.startsWith('moving failed') ? r.message : `moving failed (${who}): ${r.message}`);
  }

  /** The disk is on the target and D1 says so: the object follows, the source's copy goes, and the target's agent becomes the computer's. */
  private async commit(target: MoveTarget, relay: DiskRelay): Promise<void> {
    const obj = this.obj;
    const id = obj.record!.id;
    const source = obj.record!.host_id;
    // Before the record moves on: until then only the source's agent can be on the primary link,
    // so this destroy cannot reach the target's new (and only) copy.
    const destroyed = await obj.link.request('computer.destroy', {}, DESTROY_MS);
    // Not fatal: a source agent that reconnects is refused the computer and removes its copy.
    if (!destroyed.ok) console.warn(`move ${relay.id} of ${id}: the source copy stays until its agent reconnects: ${destroyed.message}`);
    // Memory a VM kept stays behind with the source's copy: the disk alone moves.
    await obj.save({ host_id: target.host_id, moving_to_host_id: undefined, memory_kept: false });
    await mirrorMemoryKept(this.env.DB, id, false);
    await this.host(source).detach(id);
    obj.link.closeAll(CLOSE_MOVED, 'the computer moved to another host');
    obj.target.closeAll(CLOSE_MOVED, "the computer moved here: reconnect as its agent");
    // The target's agent redials as the computer's own; a start right after the move finds it there.
    await obj.link.whenAttached(REATTACH_MS);
    this.committing = false;
    this.relay = null;
    await obj.apply('moved', { reason: 'moved', details: { region: target.region } });
  }

  /** Calls the transfer off: both agents drop it, the target's partial copy goes, the computer is stopped where it was. */
  private async rollback(targetHost: string, relay: DiskRelay): Promise<void> {
    const obj = this.obj;
    relay.end(true);
    this.relay = null;
    if (obj.target.socket()) {
      const r = await obj.target.request('computer.destroy', {}, DESTROY_MS);
      if (!r.ok) console.warn(`move ${relay.id}: removing the target's partial copy failed (its agent drops it when it reconnects): ${r.message}`);
    }
    await this.forgetTarget(targetHost);
    await obj.apply('failed');
  }

  private async forgetTarget(targetHost: string): Promise<void> {
    const obj = this.obj;
    const id = obj.record!.id;
    // D1 first: a target agent that redials after this is refused and removes whatever it has of the computer.
    await this.env.DB.prepare('UPDATE computers SET moving_to_host_id = NULL WHERE id = ?').bind(id).run();
    await obj.save({ moving_to_host_id: undefined });
    await this.host(targetHost).detach(id);
    obj.target.closeAll(CLOSE_MOVE_OFF, 'the move was called off');
  }

  // ------------------------------------------------------------ the target's socket and the relay

  /** A message on the target's socket: results, its `attached`, acknowledgements of disk bytes written, its calling off. */
  onTargetMessage(ws: WebSocket, data: string | ArrayBuffer): void {
    let parsed: ComputerAgentMessage;
    try {
      if (typeof data !== 'string') throw new Error('the target sends no binary frames');
      parsed = ComputerAgentMessage.parse(JSON.parse(data));
    } catch {
      ws.close(4400, 'malformed message');
      return;
    }
    if (parsed.type === 'result') this.obj.target.onResult(parsed);
    else if (parsed.type === 'disk.ack') this.relay?.onAck(parsed.transfer_id, parsed.offset);
    else if (parsed.type === 'disk.cancel' && parsed.transfer_id === this.relay?.id) {
      this.relay.fail(`the target host cannot take the disk: ${parsed.reason ?? 'no reason given'}`);
    }
    else if (parsed.type === 'attached') {
      this.obj.target.markAttached(ws, parsed.agent_version, parsed.protocol);
      void this.recover().catch((e) => console.error('move recovery failed', e));
    }
  }

  onDiskFrame(data: ArrayBuffer): void {
    this.relay?.onFrame(data);
  }

  /** The target's socket closed: a move still copying cannot finish. */
  onTargetClosed(): void {
    if (!this.committing) this.relay?.fail("the target host's agent disconnected");
  }

  /** Calls off a move under way (the computer is being deleted) and waits until it has ended either way. */
  async cancel(reason: string): Promise<void> {
    if (!this.running) return;
    if (!this.committing) this.relay?.fail(reason);
    await this.running.catch(() => undefined);
  }

  /** A `moving` status with no move running here (the object restarted mid-move): finish or roll back from what D1 says. */
  async recover(): Promise<void> {
    const obj = this.obj;
    const rec = obj.record;
    if (this.running || rec?.status !== 'moving') return;
    const row = await this.env.DB.prepare('SELECT host_id, region FROM computers WHERE id = ?').bind(rec.id).first<{ host_id: string | null; region: string }>();
    if (!row?.host_id || row.host_id === rec.host_id) {
      if (rec.moving_to_host_id) await this.forgetTarget(rec.moving_to_host_id);
      await obj.apply('failed');
      return;
    }
    // D1 moved on: the target has the verified disk. The source's agent, refused from now on, removes its copy.
    await obj.save({ host_id: row.host_id, moving_to_host_id: undefined });
    obj.link.closeAll(CLOSE_MOVED, 'the computer moved to another host');
    obj.target.closeAll(CLOSE_MOVED, 'the computer moved here: reconnect as its agent');
    await obj.apply('moved');
  }

  private host(hostId: string) {
    return this.env.HOST.get(this.env.HOST.idFromName(hostId));
  }
}

function speaksMove(v: { major: number; minor: number } | null): boolean {
  return v !== null && speaks(v, MOVE_MINOR);
}
