/**
 * POST /api/v1/auth/token: trades an API key (in the body as `api_key`, or as
 * `Authorization: Bearer msk_…`) for a short-lived HS256 JWT carrying the
 * key's organization and scope — the "short-lived JWT tokens" of the
 * conventions page. Default lifetime 15 min, at most 1 h. Tokens name the
 * key they came from, so revoking the key ends them too.
 */
import { IssueToken } from '../../schema/api-admin.ts';
import { ApiError } from '../../schema/errors.ts';
import { json } from '../http/responses.ts';
import { bearer } from '../middleware/auth.ts';
import { route, type RouteDef } from '../router.ts';
import { DEFAULT_TOKEN_TTL_S, signTenantJwt } from '../tenancy/jwt.ts';
import { API_KEY_RE } from '../tenancy/keys.ts';
import { principalFromApiKey } from '../tenancy/principals.ts';

export const AUTH_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: '/api/v1/auth/token',
    auth: 'auth',
    body: IssueToken,
    handler: async (c) => {
      const key = c.body.api_key ?? bearer(c.request);
      if (!key) throw new ApiError('UNAUTHORIZED', 'send the API key as api_key in the body or as Authorization: Bearer');
      // Only keys mint tokens: a token must not be able to renew itself forever.
      if (!API_KEY_RE.test(key)) throw new ApiError('UNAUTHORIZED', 'an API key (msk_live_…, msk_test_…) is required to issue a token');
      const p = await principalFromApiKey(c.env, key);
      const ttl = c.body.ttl_seconds ?? DEFAULT_TOKEN_TTL_S;
      const { token, expires_at } = await signTenantJwt(
        c.env,
        { sub: p.subject, org_id: p.org_id, workspace_ids: p.workspace_ids, project_ids: p.project_ids, mode: p.mode, key_id: p.subject },
        ttl,
      );
      return json({ data: { token, token_type: 'Bearer', expires_in: ttl, expires_at } });
    },
  }),
];
