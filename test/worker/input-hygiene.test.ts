/**
 * Small holes: names that hide what they show, commands the kernel would cut
 * short, and numbers with more than one spelling are 400s naming the field,
 * and nothing is stored.
 */
import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, operatorFetch, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, runningComputer, world } from './computer-fixtures.ts';

useAgentPeers();

/** Names that read as something else, or hold what a C string or a log line cannot. */
const SNEAKY = ['a\u0000b', 'bell\u0007', 'line\nbreak', 'tab\there', 'del\u007f', 'c1\u0085', 'report\u202Efdp.exe', 'iso\u2066late', 'sep\u2028arator', 'half\ud800'];

describe('names', () => {
  it('every name field of the API refuses control, separator, bidi-override and lone-surrogate characters with a 400 naming it', async () => {
    const w = await world();
    const c = await createComputer(w);
    const t = w.tenant;
    const cases: { what: string; field: string; send: (name: string) => Promise<Response> }[] = [
      { what: 'create computer', field: 'name', send: (n) => w.api('', { method: 'POST', body: { name: n, template_type: 'miosa-desktop', region: w.host.region } }) },
      { what: 'create computer', field: 'workspace_name', send: (n) => w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', region: w.host.region, workspace_slug: 'sneaky', workspace_name: n } }) },
      { what: 'create computer', field: 'project_name', send: (n) => w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', region: w.host.region, project_slug: 'sneaky', project_name: n } }) },
      { what: 'create computer', field: 'external_user_id', send: (n) => w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', region: w.host.region, external_user_id: n } }) },
      { what: 'rename computer', field: 'name', send: (n) => w.api(`/${c.id}`, { method: 'PATCH', body: { name: n } }) },
      { what: 'agent session', field: 'agent_session_id', send: (n) => w.api(`/${c.id}`, { method: 'PATCH', body: { agent_session_id: n } }) },
      { what: 'create workspace', field: 'name', send: (n) => tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: n } }) },
      { what: 'create project', field: 'name', send: (n) => tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: { name: n } }) },
      { what: 'create organization', field: 'name', send: (n) => operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: n } }) },
      { what: 'create API key', field: 'name', send: (n) => operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys`, { method: 'POST', body: { name: n } }) },
      { what: 'register host', field: 'name', send: (n) => operatorFetch('/api/v1/admin/hosts', { method: 'POST', body: { name: n, region: 'sneaky' } }) },
    ];
    const failures: string[] = [];
    for (const { what, field, send } of cases) {
      for (const name of SNEAKY) {
        const res = await send(name);
        const text = await res.text();
        if (res.status !== 400 || !text.includes(`"VALIDATION_FAILED"`) || !text.includes(`"message":"${field}: must not contain control`)) {
          failures.push(`${what} ${field} ${JSON.stringify(name)}: ${res.status} ${text.slice(0, 200)}`);
        }
      }
    }
    expect(failures).toEqual([]);
    // Nothing was made or changed.
    const list = await expectJson<{ computers: { name: string }[] }>(await w.api(''), 200);
    expect(list.computers.map((x) => x.name)).toEqual(['dev box']);
    const ws = await expectJson<{ data: { slug: string }[] }>(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
    expect(ws.data.map((x) => x.slug)).toEqual(['default']);
    // Names people do write still work: accents, scripts, emoji, joiners, right-to-left text.
    for (const name of ['Dr. Müller', '中文 机器', 'box 😀', '👩‍👩‍👧 family', 'שלום עולם', "o'brien & co"]) {
      expect((await w.api(`/${c.id}`, { method: 'PATCH', body: { name } })).status, name).toBe(200);
    }
  });
});

describe('commands', () => {
  it('NUL in a command or in Python code is a 400 naming the field, and nothing reaches the agent', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const before = peer.requests.length;
    const exec = await expectError(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'echo a\u0000; rm -rf ~' } }), 400, 'VALIDATION_FAILED');
    expect(exec.error.message).toBe('command: must not contain NUL characters');
    const stream = await expectError(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'ls\u0000' } }), 400, 'VALIDATION_FAILED');
    expect(stream.error.message).toBe('command: must not contain NUL characters');
    const py = await expectError(await w.api(`/${computer.id}/exec/python`, { method: 'POST', body: { code: 'print(1)\u0000' } }), 400, 'VALIDATION_FAILED');
    expect(py.error.message).toMatch(/^code: must not contain NUL characters/);
    expect(peer.requests.slice(before)).toEqual([]);
  });
});

describe('numbers in paths and queries', () => {
  it('a port in the path is canonical decimal: 0x1F90, 08080, +8080, " 8080", 8080.0 and 8e3 are 400s, not port 8080', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 8080, visibility: 'public' } }), 201);
    for (const spelled of ['0x1F90', '08080', '%2B8080', '%208080', '8080.0', '8e3', '0b1111110010000', '8080%00']) {
      const patch = await expectError(await w.api(`/${c.id}/ports/${spelled}`, { method: 'PATCH', body: { visibility: 'private' } }), 400, 'VALIDATION_FAILED');
      expect(patch.error.message, spelled).toBe('port: must be a whole number written in decimal digits');
      await expectError(await w.api(`/${c.id}/ports/${spelled}`, { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
    }
    const ports = await expectJson<{ data: { port: number; visibility: string }[] }>(await w.api(`/${c.id}/ports`), 200);
    expect(ports.data).toMatchObject([{ port: 8080, visibility: 'public' }]);
    await expectJson(await w.api(`/${c.id}/ports/8080`, { method: 'PATCH', body: { visibility: 'private' } }), 200);
  });

  it('page numbers too', async () => {
    const t = await createTenant();
    for (const q of ['page=0x2', 'page_size=1e1', 'per_page=%2B5', 'page=01']) {
      await expectError(await tenantFetch(t.apiKey, `/api/v1/workspaces?${q}`), 400, 'VALIDATION_FAILED');
    }
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces?page=1&page_size=10'), 200);
  });
});
