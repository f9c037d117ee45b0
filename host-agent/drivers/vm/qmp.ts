/**
 * A minimal QMP client (QEMU's JSON control protocol on the VM's q.sock):
 * one connection per use, commands answered in order, events ignored.
 */
import net from 'node:net';
import { DriverError } from '../driver.ts';

export class Qmp {
  private readonly socket: net.Socket;
  private buffer = '';
  private readonly waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', () => this.fail(new DriverError('FAILED', 'QMP connection failed')));
    socket.on('close', () => this.fail(new DriverError('FAILED', 'QEMU closed its QMP connection')));
  }

  /** Connects, reads the greeting and enables commands. */
  static async connect(path: string, timeoutMs = 5000): Promise<Qmp> {
    const socket = net.createConnection({ path });
    const qmp = new Qmp(socket);
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    try {
      await qmp.next(); // the greeting
      await qmp.execute('qmp_capabilities');
      return qmp;
    } catch (err) {
      socket.destroy();
      throw err instanceof DriverError ? err : new DriverError('FAILED', `QMP: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a command; resolves with its `return`, rejects with QEMU's error text. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const reply = (await this.next()) as { return?: unknown; error?: { desc?: string } };
    if (reply.error) throw new DriverError('FAILED', `QEMU refused ${command}: ${reply.error.desc ?? 'unknown error'}`);
    return reply.return;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private next(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new DriverError('FAILED', 'QMP connection closed'));
      this.waiting.push({ resolve, reject });
    });
  }

  private onData(d: string): void {
    this.buffer += d;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('event' in msg) continue;
      this.waiting.shift()?.resolve(msg);
    }
  }

  private fail(err: Error): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }
}
