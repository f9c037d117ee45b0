import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';

describe('error envelope', () => {
  it('an unknown route is a 404 in the envelope with a request id header', async () => {
    const res = await SELF.fetch('https://api.test/api/v1/nope');
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; message: string; request_id: string } };
    expect(body.error.code).toBe('NOT_FOUND');
    expect(body.error.request_id).toMatch(/^req_/);
    expect(res.headers.get('x-request-id')).toBe(body.error.request_id);
  });

  it('a known path with another method is a 405 naming the allowed methods', async () => {
    const res = await SELF.fetch('https://api.test/api/v1/health', { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toContain('GET');
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe('METHOD_NOT_ALLOWED');
  });
});
