/** Running host tools (debootstrap, mount, cp, pasta) with their output as lines. */
import { spawn } from 'node:child_process';
import { DriverError } from '../driver.ts';

export interface RunOptions {
  /** Each line of stdout and stderr, as it comes. */
  onLine?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

/** Runs a command; resolves with its output, rejects with a DriverError carrying the last lines. */
export function runCommand(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let output = '';
    let partial = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      output += text;
      if (output.length > 1 << 20) output = output.slice(-(1 << 19)); // keep the tail only
      if (!opts.onLine) return;
      partial += text;
      const lines = partial.split(/\r?\n|\r/);
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) opts.onLine(line);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new DriverError('FAILED', `${cmd} could not start: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (partial.trim() && opts.onLine) opts.onLine(partial);
      if (code === 0) return resolve(output);
      const tail = output.trim().split('\n').slice(-8).join('\n');
      reject(new DriverError('FAILED', `${cmd} ${args[0] ?? ''} failed (${signal ?? `exit ${code}`}): ${tail}`));
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // a tool that exits without reading its input is not our failure
      child.stdin.end(opts.input);
    }
  });
}
