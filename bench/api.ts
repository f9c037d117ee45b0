/** The API as the benchmarks call it: JSON in and out with a tenant key, and a create that waits for running. */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Api {
  readonly apiUrl: string;
  readonly key: string;

  constructor(apiUrl: string, key: string) {
    this.apiUrl = apiUrl;
    this.key = key;
  }

  /** The answer as it comes (a PNG, a stream), not read. */
  raw(method: string, p: string, body?: unknown): Promise<Response> {
    return fetch(this.apiUrl + p, {
      method,
      headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async call<T>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
    const r = await this.raw(method, p, body);
    return { status: r.status, body: (await r.json()) as T };
  }

  async ok<T>(method: string, p: string, body?: unknown): Promise<T> {
    const r = await this.call<T>(method, p, body);
    if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async exec(id: string, command: string): Promise<string> {
    const r = await this.ok<{ output: string; exit_code: number }>('POST', `/computers/${id}/exec`, { command });
    if (r.exit_code !== 0) throw new Error(`exec ${command}: exit ${r.exit_code}`);
    return r.output;
  }

  /** Creates a computer; resolves with its id and the ms from the POST until GET (polled every 20 ms) first says running. */
  async createRunning(name: string, extra: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<{ id: string; ms: number }> {
    const t0 = performance.now();
    const { id } = await this.ok<{ id: string }>('POST', '/computers', { name, template_type: 'miosa-desktop', ...extra });
    for (;;) {
      const { status } = await this.ok<{ status: string }>('GET', `/computers/${id}`);
      if (status === 'running') return { id, ms: performance.now() - t0 };
      if (status === 'error') throw new Error(`computer ${id} went to error`);
      if (performance.now() - t0 > timeoutMs) throw new Error(`computer ${id} not running after ${timeoutMs / 1000} s`);
      await sleep(20);
    }
  }
}

/** The same class under the name the desktop bench extends. */
export { Api as BenchApi };
