/**
 * Single-use link tickets (preview links of ports, tunnel links): an object
 * records each ticket's id once redeemed, until a minute past its expiry,
 * when it could not be redeemed any more anyway.
 */

/** Records ticket `jti` (expiring at `expS`, seconds) as used under `prefix`; false when it already was. */
export async function useTicketOnce(storage: DurableObjectStorage, prefix: string, jti: string, expS: number): Promise<boolean> {
  const key = prefix + jti;
  if ((await storage.get(key)) !== undefined) return false;
  await storage.put(key, expS);
  const now = Date.now() / 1000;
  const all = await storage.list<number>({ prefix, limit: 1000 });
  const stale = [...all].filter(([, exp]) => exp < now - 60).map(([k]) => k);
  if (stale.length) await storage.delete(stale);
  return true;
}
