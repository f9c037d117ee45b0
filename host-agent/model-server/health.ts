/**
 * Health of a model server on this host, whichever kind it is: the managed
 * server and llama.cpp's server answer `GET /health` (ours adds how busy it
 * is); Ollama does not, and is asked `GET /v1/models` instead, which also
 * tells whether the model is there. Every probe has a deadline: a server
 * that hangs is unhealthy, not waited for.
 */
export interface ModelHealth {
  healthy: boolean;
  /** Requests generating now and waiting (when the server says). */
  busy?: number;
  queued?: number;
  slots?: number;
  /** Why it is unhealthy, in words an operator can act on. */
  error?: string;
}

async function getJson(url: string, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body };
}

/** Probes the server at `base` (no `/v1`) serving `model`. */
export async function probeModelServer(base: string, model: string, timeoutMs = 3_000): Promise<ModelHealth> {
  try {
    const h = await getJson(`${base}/health`, timeoutMs);
    if (h.status === 200) {
      const b = (h.body ?? {}) as { status?: unknown; busy?: unknown; queued?: unknown; slots?: unknown };
      if (b.status !== undefined && b.status !== 'ok') return { healthy: false, error: `the model server says ${JSON.stringify(b.status)}` };
      return { healthy: true, ...numbers(b) };
    }
    if (h.status === 503) return { healthy: false, error: 'the model server is still loading the model' };
    // No /health (Ollama): the model list answers, and says whether the model is pulled.
    const m = await getJson(`${base}/v1/models`, timeoutMs);
    if (m.status !== 200) return { healthy: false, error: `the model server answered HTTP ${m.status} to /v1/models` };
    const ids = ((m.body as { data?: Array<{ id?: unknown }> } | null)?.data ?? []).map((d) => d.id);
    if (ids.length && !ids.some((id) => id === model || (typeof id === 'string' && id.replace(/:latest$/, '') === model))) {
      return { healthy: false, error: `the model server does not have ${model} (it has ${ids.slice(0, 5).join(', ')}); pull or load it there` };
    }
    return { healthy: true };
  } catch (e) {
    const name = (e as Error).name;
    return { healthy: false, error: name === 'TimeoutError' ? `the model server did not answer within ${timeoutMs} ms` : `the model server is unreachable: ${(e as Error).message}` };
  }
}

function numbers(b: { busy?: unknown; queued?: unknown; slots?: unknown }): Pick<ModelHealth, 'busy' | 'queued' | 'slots'> {
  const out: Pick<ModelHealth, 'busy' | 'queued' | 'slots'> = {};
  if (typeof b.busy === 'number') out.busy = b.busy;
  if (typeof b.queued === 'number') out.queued = b.queued;
  if (typeof b.slots === 'number') out.slots = b.slots;
  return out;
}
