/** One line per event on stderr: time, scope, message. */
export type Logger = (msg: string) => void;

export function logger(scope: string): Logger {
  return (msg) => process.stderr.write(`${new Date().toISOString()} ${scope} ${msg}\n`);
}
