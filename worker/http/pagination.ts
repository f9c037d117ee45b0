/** Pagination of every list: page (from 1), page_size up to 100 (per_page accepted as an alias). */
import { z } from 'zod';
import { validate } from './body.ts';
import { DecimalInt } from '../../schema/text.ts';

export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;

const PageQuery = z.object({
  page: DecimalInt.pipe(z.number().int().min(1)).default(1),
  page_size: DecimalInt.pipe(z.number().int().min(1).max(MAX_PAGE_SIZE)).optional(),
  per_page: DecimalInt.pipe(z.number().int().min(1).max(MAX_PAGE_SIZE)).optional(),
});

export interface Page {
  page: number;
  page_size: number;
  offset: number;
}

export function readPage(query: URLSearchParams): Page {
  const q = validate(
    PageQuery,
    { page: query.get('page') ?? undefined, page_size: query.get('page_size') ?? undefined, per_page: query.get('per_page') ?? undefined },
    'query',
  );
  const size = q.page_size ?? q.per_page ?? DEFAULT_PAGE_SIZE;
  return { page: q.page, page_size: size, offset: (q.page - 1) * size };
}

/** The conventions page's pagination object, plus `per_page` for clients of the hosts page's `meta`. */
export const pageInfo = (p: Page, total: number) => ({ page: p.page, page_size: p.page_size, per_page: p.page_size, total });
