/** Which model a session talks to: a tenant's cluster, the tenant's own provider, or the operator's default. */
import { describe, expect, it } from 'vitest';
import { chooseModel, providerKey } from '../../durable-objects/agent-session/model-choice.ts';

const cluster = { id: 'c0ffee00-0000-4000-8000-000000000001', slug: 'my-cluster', model: 'hangar-tiny' };
const operator = { AGENT_MODEL_BASE_URL: 'https://models.example/v1', AGENT_MODEL_API_KEY: 'op-key', AGENT_MODEL: 'op-model' };

describe('model choice', () => {
  it('takes a named cluster first, with the cluster\'s model', () => {
    expect(chooseModel('my-cluster', cluster, { OPENAI_API_KEY: 'k' }, operator)).toEqual({ ok: true, choice: { kind: 'cluster', cluster_id: cluster.id, model: 'hangar-tiny' } });
  });

  it('takes the tenant\'s provider from secrets over the operator\'s', () => {
    const secrets = { OPENAI_API_KEY: 'sk-tenant', OPENAI_BASE_URL: 'https://tenant.example/v1', OPENAI_MODEL: 'tenant-model' };
    const r = chooseModel(undefined, null, secrets, operator);
    expect(r).toEqual({ ok: true, choice: { kind: 'provider', source: 'tenant', base_url: 'https://tenant.example/v1', model: 'tenant-model' } });
    expect(providerKey((r as { ok: true; choice: never }).choice, secrets, operator)).toBe('sk-tenant');
    expect(chooseModel('gpt-x', null, { OPENAI_API_KEY: 'k' }, operator)).toMatchObject({ ok: true, choice: { base_url: 'https://api.openai.com/v1', model: 'gpt-x' } });
  });

  it('falls back to the operator\'s default provider and model', () => {
    const r = chooseModel(undefined, null, {}, operator);
    expect(r).toEqual({ ok: true, choice: { kind: 'provider', source: 'operator', base_url: 'https://models.example/v1', model: 'op-model' } });
    expect(providerKey((r as { ok: true; choice: never }).choice, {}, operator)).toBe('op-key');
  });

  it('says what to set when there is no model at all', () => {
    expect(chooseModel(undefined, null, {}, {})).toMatchObject({ ok: false, message: expect.stringMatching(/OPENAI_API_KEY/) });
    expect(chooseModel(undefined, null, { OPENAI_API_KEY: 'k' }, {})).toMatchObject({ ok: false, message: expect.stringMatching(/OPENAI_MODEL/) });
    expect(chooseModel('m', null, { OPENAI_API_KEY: 'k', OPENAI_BASE_URL: 'ftp://x' }, {})).toMatchObject({ ok: false, message: expect.stringMatching(/not an http/) });
  });
});
