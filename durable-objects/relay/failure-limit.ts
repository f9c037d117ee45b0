/**
 * Wrong passwords counted in the object that checks them: at most PER_CLIENT
 * failures per client address and PER_TUNNEL from everyone within WINDOW_MS;
 * past either, attempts are refused (429) without checking until the window
 * moves on — a guesser gets a few tries a minute however many addresses it
 * has, the tunnel's own users at worst wait a minute. Memory is bounded: the
 * oldest client is forgotten first.
 */
export const WINDOW_MS = 60_000;
export const PER_CLIENT = 10;
export const PER_TUNNEL = 60;
const MAX_CLIENTS = 10_000;

export class FailureLimit {
  private readonly clients = new Map<string, number[]>();
  private all: number[] = [];
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Seconds until `client` may try again, or 0 when it may now. */
  retryAfter(client: string): number {
    const t = this.now();
    const mine = this.recent(this.clients.get(client) ?? [], t);
    this.all = this.recent(this.all, t);
    const wait = (times: number[], limit: number) => (times.length >= limit ? times[times.length - limit] + WINDOW_MS - t : 0);
    return Math.ceil(Math.max(wait(mine, PER_CLIENT), wait(this.all, PER_TUNNEL), 0) / 1000);
  }

  /** Counts a wrong password from `client`. */
  failed(client: string): void {
    const t = this.now();
    const mine = this.recent(this.clients.get(client) ?? [], t);
    mine.push(t);
    this.clients.delete(client);
    this.clients.set(client, mine);
    if (this.clients.size > MAX_CLIENTS) this.clients.delete(this.clients.keys().next().value!);
    this.all.push(t);
  }

  /** Forgets everything (the password changed). */
  clear(): void {
    this.clients.clear();
    this.all = [];
  }

  private recent(times: number[], t: number): number[] {
    let i = 0;
    while (i < times.length && times[i] <= t - WINDOW_MS) i++;
    return i ? times.slice(i) : times;
  }
}
