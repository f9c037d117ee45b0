/**
 * AI agent sessions on a tenant host (spec/05, Agents; docs/agents.md).
 * Dispatch decides the session's model (a cluster of the tenant's, the
 * tenant's provider from secrets, or the operator's default; 422 saying what
 * to set when none), writes the session's row and hands it to its own
 * object, which runs it. Lists and gets read the row the object keeps up to
 * date; DELETE cancels (204); the stream is the object's. A session of
 * another tenant, or of another host, is a 404 like a host of another tenant.
 */
import { DispatchAgent, TOOL_NAMES, budgetOf, type SessionView, type ToolName } from '../../../schema/api-agents.ts';
import { ApiError } from '../../../schema/errors.ts';
import type { Env } from '../../env.ts';
import { loadHostSecrets } from '../../crypto/host-secrets.ts';
import { isoNow, looksLikeId, newId } from '../../http/ids.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { chooseModel, type ClusterRef } from '../../../durable-objects/agent-session/model-choice.ts';
import { newLoopState } from '../../../durable-objects/agent-session/session-loop.ts';
import { loadTenantHost, refOf, single, type TenantHostRow } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

const BASE = `${OC_BASE}/hosts/:id/agent`;
const SESSION_NOT_FOUND = 'agent session not found';
const COLUMNS = 'id, org_id, host_id, task, status, model, max_turns, turns_used, steps_used, tokens_used, tools, budget, end_reason, summary, error, created_at, updated_at, completed_at';

interface SessionRow {
  id: string;
  org_id: string;
  host_id: string;
  task: string;
  status: SessionView['status'];
  model: string;
  max_turns: number;
  turns_used: number;
  steps_used: number;
  tokens_used: number;
  tools: string;
  budget: string;
  end_reason: SessionView['end_reason'];
  summary: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

const sessionStub = (env: Env, id: string) => env.AGENT_SESSION.get(env.AGENT_SESSION.idFromName(id));

/** The session as the page shows it, then ours. */
function sessionView(r: SessionRow): SessionView {
  return {
    id: r.id,
    host_id: r.host_id,
    task: r.task,
    status: r.status,
    max_turns: r.max_turns,
    turns_used: r.turns_used,
    created_at: r.created_at,
    updated_at: r.updated_at,
    completed_at: r.completed_at,
    error: r.error,
    model: r.model,
    tools: JSON.parse(r.tools) as ToolName[],
    budget: JSON.parse(r.budget) as SessionView['budget'],
    steps_used: r.steps_used,
    tokens_used: r.tokens_used,
    end_reason: r.end_reason,
    summary: r.summary,
  };
}

/** One of the tenant's clusters by id or slug, if `name` is one. */
async function clusterNamed(env: Env, orgId: string, name: string): Promise<ClusterRef | null> {
  const byId = looksLikeId(name);
  const row = await env.DB.prepare(`SELECT id, slug, model FROM clusters WHERE org_id = ? AND ${byId ? 'id' : 'slug'} = ?`)
    .bind(orgId, byId ? name.toLowerCase() : name)
    .first<ClusterRef>();
  return row ?? null;
}

async function sessionOf(c: RouteContext): Promise<{ host: TenantHostRow; row: SessionRow }> {
  const host = await loadTenantHost(c.env, c.principal, c.params.id);
  if (!looksLikeId(c.params.session_id)) throw new ApiError('INVALID_ID', 'invalid session id');
  const row = await c.env.DB.prepare(`SELECT ${COLUMNS} FROM agent_sessions WHERE id = ? AND host_id = ? AND org_id = ?`)
    .bind(c.params.session_id.toLowerCase(), host.id, host.org_id)
    .first<SessionRow>();
  if (!row) throw new ApiError('NOT_FOUND', SESSION_NOT_FOUND);
  return { host, row };
}

/** The session's events: the object's stream, resumed after Last-Event-ID. */
async function stream(c: RouteContext): Promise<Response> {
  const { row } = await sessionOf(c);
  const headers = new Headers();
  const last = c.request.headers.get('last-event-id');
  if (last !== null) headers.set('last-event-id', last);
  return sessionStub(c.env, row.id).fetch(new Request(c.url.toString(), { headers, signal: c.request.signal }));
}

export const AGENT_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: `${BASE}/dispatch`,
    auth: 'tenant',
    body: DispatchAgent,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      if (host.status === 'revoked') throw new ApiError('CONFLICT', 'the host is revoked; an agent cannot be dispatched to it');
      const requested = c.body.model_id ?? c.body.model;
      const cluster = requested ? await clusterNamed(c.env, host.org_id, requested) : null;
      const secrets = await loadHostSecrets(c.env.DB, c.env.ENV_ENCRYPTION_KEY, host.org_id, host.id);
      const chosen = chooseModel(requested, cluster, secrets, c.env);
      if (!chosen.ok) throw new ApiError('MODEL_NOT_CONFIGURED', chosen.message);
      const budget = budgetOf(c.body);
      const tools = c.body.tools ? TOOL_NAMES.filter((t) => c.body.tools!.includes(t)) : [...TOOL_NAMES];
      const now = isoNow();
      const row: SessionRow = {
        id: newId(),
        org_id: host.org_id,
        host_id: host.id,
        task: c.body.task,
        status: 'pending',
        model: chosen.choice.model,
        max_turns: budget.max_turns,
        turns_used: 0,
        steps_used: 0,
        tokens_used: 0,
        tools: JSON.stringify(tools),
        budget: JSON.stringify({ max_steps: budget.max_steps, max_tokens: budget.max_tokens, timeout_ms: budget.timeout_ms }),
        end_reason: null,
        summary: null,
        error: null,
        created_at: now,
        updated_at: now,
        completed_at: null,
      };
      await c.env.DB.prepare(`INSERT INTO agent_sessions (${COLUMNS}) VALUES (${COLUMNS.split(',').map(() => '?').join(', ')})`)
        .bind(...COLUMNS.split(', ').map((k) => row[k as keyof SessionRow]))
        .run();
      await sessionStub(c.env, row.id).start({ id: row.id, host: refOf(host), choice: chosen.choice }, newLoopState(c.body.task, c.body.context, budget, tools));
      return json(single(sessionView(row)), 201);
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/sessions`,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<SessionRow>(
        c.env,
        { columns: COLUMNS, from: 'agent_sessions', where: 'host_id = ? AND org_id = ?', args: [host.id, host.org_id], orderBy: 'created_at DESC, rowid DESC' },
        page,
      );
      return json({ data: rows.map(sessionView), meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/sessions/:session_id`,
    auth: 'tenant',
    handler: async (c) => json(single(sessionView((await sessionOf(c)).row))),
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/sessions/:session_id`,
    auth: 'tenant',
    handler: async (c) => {
      const { row } = await sessionOf(c);
      await sessionStub(c.env, row.id).cancel();
      return new Response(null, { status: 204 });
    },
  }),
  route({ method: 'GET', path: `${BASE}/sessions/:session_id/stream`, auth: 'tenant', handler: stream }),
  route({ method: 'GET', path: `${BASE}/sessions/:session_id/events`, auth: 'tenant', handler: stream }),
];
