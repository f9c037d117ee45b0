/**
 * The host's end of a VM's control loop (boot/control): one line per
 * request, `<id> <command>`, answered by `<id> ok [words]` or
 * `<id> error <text>`. It serves what must not depend on the guest agent —
 * power-off, freezing the disk for a consistent copy, CPU and memory counters.
 *
 * The loop in the VM may answer a request of an earlier connection on this
 * one (its writes wait while no host is connected), so answers are matched
 * by id and strays are dropped; every request starts on a fresh line, so a
 * partial line left by a dropped connection cannot swallow it.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export class ControlError extends Error {}

export class ControlClient {
  private readonly path: string;
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private buffer = '';
  private readonly pending = new Map<string, { resolve: (words: string[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(path: string) {
    this.path = path;
  }

  /** Sends `command`; resolves with the words after `ok`. */
  async request(command: string, timeoutMs: number): Promise<string[]> {
    const socket = await this.connect(timeoutMs);
    const id = randomBytes(6).toString('hex');
    return new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ControlError(`the VM did not answer "${command}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      socket.write(`\n${id} ${command}\n`);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private connect(timeoutMs: number): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path: this.path });
      const timer = setTimeout(() => s.destroy(new ControlError('timed out connecting to the VM control channel')), timeoutMs);
      s.setEncoding('utf8');
      s.once('connect', () => {
        clearTimeout(timer);
        this.socket = s;
        resolve(s);
      });
      s.on('data', (d: string) => this.onData(d));
      s.on('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof ControlError ? e : new ControlError(`VM control channel: ${e.message}`));
      });
      s.on('close', () => {
        if (this.socket === s) this.socket = null;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new ControlError('the VM control channel closed'));
          this.pending.delete(id);
        }
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private onData(d: string): void {
    this.buffer += d;
    if (this.buffer.length > 1 << 16) this.buffer = this.buffer.slice(-4096); // only ever short lines
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const words = this.buffer.slice(0, nl).trim().split(/\s+/);
      this.buffer = this.buffer.slice(nl + 1);
      const p = this.pending.get(words[0] ?? '');
      if (!p) continue;
      this.pending.delete(words[0]);
      clearTimeout(p.timer);
      if (words[1] === 'ok') p.resolve(words.slice(2));
      else p.reject(new ControlError(`the VM refused: ${words.slice(2).join(' ')}`));
    }
  }
}
