/**
 * Ending what a credential opened. An API key is revoked in D1 first (from
 * then on every new use of it, and of the JWTs and stream tokens minted from
 * it, is refused); then every object that may hold connections opened with
 * it is told, closes them, and refuses late ones. Called by the revocation of
 * a key and by the deletion of a workspace a key was scoped to.
 */
import type { Env } from '../env.ts';
import { forgetCachedKey } from '../tenancy/principals.ts';
import { CREDENTIAL_HOLDERS } from './holders.ts';

/** Objects told at once; more wait their turn. */
const CONCURRENCY = 16;

/** Tells every holder of the organization that the credential is revoked; resolves when all have closed what they held. */
export async function endCredential(env: Env, orgId: string, credentialId: string): Promise<void> {
  forgetCachedKey(credentialId);
  const holders = (await Promise.all(CREDENTIAL_HOLDERS.map((source) => source(env, orgId)))).flat();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, holders.length) }, async () => {
      while (next < holders.length) {
        const holder = holders[next++];
        try {
          await holder.endCredential(credentialId);
        } catch (err) {
          // One unreachable object must not keep the others open; it refuses the key by itself
          // at its next connection (it asks D1 afresh), and what it holds is logged here.
          console.error(`revoking credential ${credentialId}: an object could not be told`, err);
        }
      }
    }),
  );
}
