/**
 * Operator API: credits. Every grant or adjustment (positive or negative) is
 * a credit_transactions row, written in the same D1 batch as the balance
 * change, so the balance is always the sum of the transactions.
 */
import { AdjustCredits } from '../../schema/api-admin.ts';
import { isoNow, newId } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { requireOrganization } from '../tenancy/organizations.ts';
import { pagedQuery } from '../http/paged-query.ts';

const BASE = '/api/v1/admin/organizations/:org_id/credits';

interface TransactionRow {
  id: string;
  org_id: string;
  amount: number;
  reason: string;
  computer_id: string | null;
  created_at: string;
}

export const ADMIN_CREDIT_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'operator',
    body: AdjustCredits,
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      const tx: TransactionRow = { id: newId(), org_id: org.id, amount: c.body.amount, reason: c.body.reason, computer_id: null, created_at: isoNow() };
      const [, , balance] = await c.env.DB.batch([
        c.env.DB.prepare('INSERT INTO credit_transactions (id, org_id, amount, reason, computer_id, created_at) VALUES (?, ?, ?, ?, NULL, ?)').bind(
          tx.id,
          tx.org_id,
          tx.amount,
          tx.reason,
          tx.created_at,
        ),
        c.env.DB.prepare('UPDATE organizations SET credits = credits + ?, updated_at = ? WHERE id = ?').bind(tx.amount, tx.created_at, org.id),
        c.env.DB.prepare('SELECT credits FROM organizations WHERE id = ?').bind(org.id),
      ]);
      const credits = (balance.results[0] as { credits: number }).credits;
      return json({ data: { transaction: tx, balance: credits } }, 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'operator',
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      return json({ data: { org_id: org.id, balance: org.credits } });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/transactions`,
    auth: 'operator',
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<TransactionRow>(
        c.env,
        { columns: 'id, org_id, amount, reason, computer_id, created_at', from: 'credit_transactions', where: 'org_id = ?', args: [org.id], orderBy: 'created_at DESC, rowid DESC' },
        page,
      );
      return json({ data: rows, page: pageInfo(page, total) });
    },
  }),
];
