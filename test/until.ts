/** Polling in tests: waits for something the system does in its own time, with a generous deadline and a clear failure. */

/** Calls `fn` every `everyMs` until it returns something truthy (which it answers); throws naming `what` after `ms`. */
export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false | ''>, ms = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
