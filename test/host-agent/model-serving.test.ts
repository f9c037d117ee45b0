/**
 * How a host serves clusters' models: one managed server per model shared by
 * the clusters that need it, stopped when none does, restarted when it dies;
 * an existing server used as it is and never stopped; health reported on
 * every change.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagedModelServer } from '../../host-agent/model-server/managed-server.ts';
import { loopbackPort, ModelServing, type ServingStatus } from '../../host-agent/model-server/model-serving.ts';
import { probeModelServer } from '../../host-agent/model-server/health.ts';
import { ModelsHandler } from '../../host-agent/model-server/models-handler.ts';
import { MODELS_RESULT_SCHEMAS, ModelsStatus } from '../../schema/protocol-models.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-serving-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(what: string, fn: () => T | Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('model serving on a host', () => {
  it('starts one managed server for a model, shares it between clusters, and stops it when the last lets go', async () => {
    const reports: ServingStatus[] = [];
    const serving = new ModelServing({ modelsDir: dir, slots: 1, threads: 1, healthIntervalMs: 200 }, () => {}, (s) => reports.push(s));
    try {
      const a = await serving.serve('cl_a', 'hangar-tiny');
      expect(a).toMatchObject({ cluster_id: 'cl_a', model: 'hangar-tiny', state: 'ready', managed: true, slots: 1, busy: 0 });
      expect(a.port).toBeGreaterThan(0);
      const b = await serving.serve('cl_b', 'hangar-tiny');
      expect(b.port).toBe(a.port);
      expect(reports.filter((r) => r.cluster_id === 'cl_a').map((r) => r.state)).toEqual(['starting', 'ready']);
      const res = await fetch(`http://127.0.0.1:${a.port}/v1/models`);
      expect(res.status).toBe(200);
      await serving.unserve('cl_a');
      expect((await probeModelServer(`http://127.0.0.1:${a.port}`, 'hangar-tiny')).healthy).toBe(true);
      await serving.unserve('cl_b');
      expect((await probeModelServer(`http://127.0.0.1:${a.port}`, 'hangar-tiny')).healthy).toBe(false);
      expect(serving.statuses()).toEqual([]);
    } finally {
      await serving.close();
    }
  });

  it('reports a server that dies as unhealthy, restarts it, and reports it ready again', async () => {
    const reports: ServingStatus[] = [];
    const serving = new ModelServing({ modelsDir: dir, slots: 1, threads: 1, healthIntervalMs: 200, restartDelaysMs: [200] }, () => {}, (s) => reports.push(s));
    try {
      const first = await serving.serve('cl_c', 'hangar-tiny');
      const pid = serving.pidOf('hangar-tiny')!;
      expect(pidAlive(pid)).toBe(true);
      process.kill(pid, 'SIGKILL');
      await until('unhealthy', () => reports.at(-1)!, (r) => r.state === 'unhealthy');
      expect(reports.at(-1)!.error).toMatch(/exited \(SIGKILL\).*restarting/);
      const again = await until('ready again', () => serving.statuses()[0], (s) => s?.state === 'ready' && s.port > 0);
      expect(again.port).not.toBe(first.port);
      expect((await probeModelServer(`http://127.0.0.1:${again.port}`, 'hangar-tiny')).healthy).toBe(true);
    } finally {
      await serving.close();
    }
  });

  it('says why a model cannot be served', async () => {
    const serving = new ModelServing({ modelsDir: dir }, () => {}, () => {});
    try {
      const s = await serving.serve('cl_d', 'llama3:70b');
      expect(s).toMatchObject({ state: 'error', port: 0 });
      expect(s.error).toMatch(/llama3_70b\.gguf/);
    } finally {
      await serving.close();
    }
  });

  it('uses a server already on the host as it is, and never stops it', async () => {
    const existing = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 1, threads: 1 });
    const url = await existing.start();
    const serving = new ModelServing({ modelsDir: dir, externalUrl: `${url}/v1` }, () => {}, () => {});
    try {
      const s = await serving.serve('cl_e', 'hangar-tiny');
      expect(s).toMatchObject({ state: 'ready', managed: false, port: existing.port });
      await serving.unserve('cl_e');
      expect(existing.running).toBe(true);
      expect((await probeModelServer(url, 'hangar-tiny')).healthy).toBe(true);
    } finally {
      await serving.close();
      await existing.stop();
    }
  });

  it('refuses an existing server that is not on loopback', () => {
    expect(() => loopbackPort('http://10.1.2.3:11434')).toThrow(/loopback/);
    expect(loopbackPort('http://127.0.0.1:11434/v1')).toBe(11434);
  });

  it('answers protocol 1.9 requests with results the server can parse, and reports status messages', async () => {
    const sent: Array<Record<string, unknown>> = [];
    const handler = new ModelsHandler({ modelsDir: dir, slots: 1, threads: 1 }, (m) => sent.push(m as Record<string, unknown>), () => {});
    try {
      await handler.onMessage({ type: 'models.serve', id: 'r1', cluster_id: 'cl_1', model: '../etc/passwd' });
      expect(sent.pop()).toMatchObject({ type: 'result', id: 'r1', ok: false, error: { code: 'BAD_REQUEST' } });
      await handler.onMessage({ type: 'models.serve', id: 'r2', cluster_id: 'cl_1', model: 'hangar-tiny' });
      const result = sent.find((m) => m.type === 'result' && m.id === 'r2')!;
      expect(result.ok).toBe(true);
      expect(MODELS_RESULT_SCHEMAS['models.serve'].parse(result.data)).toMatchObject({ state: 'ready', cluster_id: 'cl_1' });
      const statuses = sent.filter((m) => m.type === 'models.status').map((m) => ModelsStatus.parse(m).statuses[0].state);
      expect(statuses).toEqual(['starting', 'ready']);
      sent.length = 0;
      handler.connected();
      expect(ModelsStatus.parse(sent[0]).statuses).toHaveLength(1);
      await handler.onMessage({ type: 'models.unserve', id: 'r3', cluster_id: 'cl_1' });
      expect(sent.at(-1)).toEqual({ type: 'result', id: 'r3', ok: true, data: {} });
      expect(handler.serving.statuses()).toEqual([]);
    } finally {
      await handler.close();
    }
  });
});
