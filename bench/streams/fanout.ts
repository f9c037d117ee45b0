/**
 * SSE fan-out: N viewers of one stream in this process, each event line
 * carrying the time it was emitted (ns, realtime clock — the computer shares
 * the host's kernel clock). Per event: the spread from the first viewer
 * having it to the last, and the lag from emission to the last viewer.
 */
import { pct } from './measure.ts';
import type { Stack } from './stack.ts';

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

export interface Fanout {
  spreadP50: number;
  spreadMax: number;
  lagLastP50: number;
  lagLastMax: number;
  /** Events some viewer never got. */
  incomplete: number;
}

/** N viewers reading `url`; arrivals[k] are the times viewers saw event k, emitted[k] when it was printed. */
function watch(n: number, url: string) {
  const arrivals = new Map<number, number[]>();
  const emitted = new Map<number, number>();
  const abort = new AbortController();
  let connected = 0;
  let onAll: () => void = () => {};
  const ready = new Promise<void>((r) => (onAll = r));
  const one = async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let rest = '';
    let first = true;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        const t = now();
        if (first && ++connected === n) onAll();
        first = false;
        const text = rest + decoder.decode(value, { stream: true });
        const cut = text.lastIndexOf('\n\n') + 2;
        rest = text.slice(cut);
        for (const m of text.slice(0, cut).matchAll(/ev-(\d+) (\d+)/g)) {
          const k = Number(m[1]);
          emitted.set(k, Number(m[2]) / 1e6);
          (arrivals.get(k) ?? arrivals.set(k, []).get(k)!).push(t);
        }
      }
    } catch {
      /* aborted */
    }
  };
  const done = Promise.all(Array.from({ length: n }, one));
  return { arrivals, emitted, ready, done, close: () => abort.abort() };
}

function summarize(n: number, w: ReturnType<typeof watch>): Fanout {
  const spread: number[] = [];
  const lag: number[] = [];
  let incomplete = 0;
  for (const [k, times] of w.arrivals) {
    if (times.length < n) {
      incomplete++;
      continue;
    }
    spread.push(Math.max(...times) - Math.min(...times));
    lag.push(Math.max(...times) - w.emitted.get(k)!);
  }
  return { spreadP50: pct(spread, 50), spreadMax: Math.max(...spread), lagLastP50: pct(lag, 50), lagLastMax: Math.max(...lag), incomplete };
}

/** Our stack: one streamed command printing `events` timestamped lines, 100 ms apart, once all N are connected. */
export async function fanoutHangar(stack: Stack, n: number, origin = stack.origin, events = 20): Promise<Fanout> {
  const go = `/tmp/go-${n}-${Date.now()}`;
  const command = `while [ ! -f ${go} ]; do sleep 0.02; done; for i in $(seq 1 ${events}); do echo "ev-$i $(date +%s%N)"; sleep 0.1; done`;
  const t = await stack.call<{ stream_url: string }>('POST', `/computers/${stack.computerId}/exec/stream`, { command, timeout: 300 });
  if (t.status !== 202) throw new Error(`exec/stream: ${t.status}`);
  const w = watch(n, origin + t.body.stream_url);
  await w.ready;
  await stack.sh(`touch ${go}`);
  await w.done;
  return summarize(n, w);
}

/** The baseline: the same viewers on a plain Node SSE server (baseline-server.ts), fed the same lines. */
export async function fanoutBaseline(base: string, n: number, events = 20): Promise<Fanout> {
  const w = watch(n, `${base}/events`);
  await w.ready;
  for (let k = 1; k <= events; k++) {
    await fetch(`${base}/emit`, { method: 'POST', body: `ev-${k} ${Math.round(now() * 1e6)}` });
    await sleep(100);
  }
  await sleep(500);
  w.close();
  await w.done;
  return summarize(n, w);
}
