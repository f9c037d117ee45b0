/**
 * A computer's desktop as its ComputerObject composes it: the daemon inside
 * (control calls), the VNC viewers, and the viewer password. When the
 * desktop starts is the operator's choice (DESKTOP_START, start-policy.ts):
 * `boot` starts it as soon as the computer runs, so desktop_url shows it at
 * once; `first-use` starts it on the first desktop call or viewer, saving the
 * memory of desktops nobody opens. docs/desktop.md has the measurements.
 */
import type { ExecRunParams, ExecRunResult } from '../../schema/protocol.ts';
import type { Result } from '../../schema/errors.ts';
import { DEFAULT_RESOLUTION, type DaemonOp } from '../../schema/desktop.ts';
import type { Caller, ComputerRecord } from '../computer/record.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import type { DaemonAnswer } from './daemon-connection.ts';
import { DesktopDaemon, type DesktopResult } from './desktop-daemon.ts';
import type { DesktopStartPolicy } from './start-policy.ts';
import { ViewerPassword } from './viewer-password.ts';
import { VncViewers } from './vnc-viewers.ts';

export interface ComputerDesktopHost {
  record(): ComputerRecord | null;
  requireRunning(caller: Caller): Promise<Result<ComputerRecord>>;
  relay: RelayMux;
  exec(params: ExecRunParams, timeoutMs: number): Promise<Result<ExecRunResult>>;
  /** When this computer's desktop starts; asked each time the computer starts running. */
  policy(): Promise<DesktopStartPolicy>;
  /** Viewers came or went. */
  viewersChanged(): void;
}

export class ComputerDesktop {
  readonly daemon: DesktopDaemon;
  readonly password: ViewerPassword;
  readonly viewers: VncViewers;

  private readonly ctx: DurableObjectState;
  private readonly host: ComputerDesktopHost;

  constructor(ctx: DurableObjectState, host: ComputerDesktopHost) {
    this.ctx = ctx;
    this.host = host;
    this.daemon = new DesktopDaemon({
      openStream: (port) => host.relay.open({ kind: 'computer_tcp', port }, { tags: { kind: 'desktop', port }, quiet: true }),
      exec: host.exec,
      resolution: () => host.record()?.resolution ?? DEFAULT_RESOLUTION,
    });
    this.password = new ViewerPassword(ctx.storage);
    this.viewers = new VncViewers({
      record: host.record,
      requireRunning: host.requireRunning,
      relay: host.relay,
      daemon: this.daemon,
      password: this.password,
      changed: host.viewersChanged,
    });
  }

  /** The computer has just started running. */
  onRunning(): void {
    this.ctx.waitUntil(
      (async () => {
        if ((await this.host.policy()) === 'boot') await this.daemon.start();
      })(),
    );
  }

  /** The computer stopped (or is going away): its connections are gone. */
  onStopped(): void {
    this.daemon.closeAll();
  }

  /** A new viewer password; viewers who logged in with the old one are disconnected. */
  async rotatePassword(): Promise<{ password: string; created_at: string }> {
    const next = await this.password.rotate();
    this.host.relay.resetWhere((t) => t.kind === 'vnc-password', 'closed', 'the viewer password was rotated');
    return next;
  }

  async call(caller: Caller, op: DaemonOp, args: Record<string, unknown>, timeoutMs: number): Promise<DesktopResult<DaemonAnswer>> {
    const access = await this.host.requireRunning(caller);
    if (!access.ok) return access;
    return this.daemon.call(op, args, timeoutMs);
  }

  /** Waits (the `wait` action), then answers with a screenshot if asked; the computer must run before and after. */
  async wait(caller: Caller, ms: number, shot: { screenshot?: { delay_ms: number } }): Promise<DesktopResult<DaemonAnswer>> {
    const access = await this.host.requireRunning(caller);
    if (!access.ok) return access;
    await new Promise((r) => setTimeout(r, ms));
    if (!shot.screenshot) return { ok: true, value: { data: { waited_ms: ms }, payload: new Uint8Array() } };
    const r = await this.daemon.call('screenshot', {}, 30_000);
    if (!r.ok) return r;
    const { width, height } = r.value.data as { width: number; height: number };
    return { ok: true, value: { data: { waited_ms: ms, screenshot: { format: 'png', width, height } }, payload: r.value.payload } };
  }
}
