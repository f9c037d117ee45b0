/**
 * The computer object as existing client code reads it, on a real computer:
 * its real address, "create, then start, then wait", metadata kept.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';

describe('computer shapes on a real computer', () => {
  let api: Client;
  const ids: string[] = [];

  beforeAll(async () => {
    api = await newTenant('shapes');
  });

  afterAll(async () => {
    await Promise.all(ids.map((id) => api.del(`/computers/${id}`)));
  });

  it('create, then start at once, then wait: the start is a 200 and the computer comes up with its address and metadata', async () => {
    const created = await api.post('/computers', { name: 'shapes', template_type: 'miosa-desktop', metadata: { purpose: 'e2e' } });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    ids.push(id);
    const start = await api.post(`/computers/${id}/start`);
    expect(start.status).toBe(200);
    expect(start.body).toMatchObject({ id, metadata: { purpose: 'e2e' } });
    expect(['provisioning', 'running']).toContain(start.body.status);
    const running = await api.waitFor(id, 'running');
    expect(running.ip_address).toMatch(/^\d+\.\d+\.\d+\.\d+$|:/);
    // The address the API shows is the one the computer has on its own interface.
    const inside = await api.exec(id, "ip -o addr show scope global | awk '{print $4}' | cut -d/ -f1");
    expect(inside.body.output.split('\n')).toContain(running.ip_address);
    expect((await api.get(`/computers?status=running`)).body).toMatchObject({ total: 1, computers: [{ id, metadata: { purpose: 'e2e' } }] });
  });
});
