import path from 'node:path';
import { defineConfig } from 'vitest/config';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers';
import { buildDesktopPage } from '../scripts/build-desktop-page.ts';

// Worker and Durable Object tests, run inside workerd with local D1 and the
// real Durable Object classes; migrations are applied in test/worker/setup.ts.
export default defineConfig(async () => {
  // wrangler's [build] step does not run here: the desktop page's bundle is made the same way.
  await buildDesktopPage();
  // The Worker serves the host-mode agent as one file; wrangler builds it before dev and deploy, the tests here.
  const { buildAgentBundle } = await import('../scripts/build-agent.mjs');
  await buildAgentBundle();
  const migrations = await readD1Migrations(path.join(import.meta.dirname, '../schema/migrations'));
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: './wrangler.toml' },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            OPERATOR_TOKEN: 'op_test_token',
            JWT_SECRET: 'test-jwt-secret-which-is-long-enough-0123456789',
            ENV_ENCRYPTION_KEY: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
            // A tenant host away this long fails its running jobs (host_lost): short, so a test can wait it out.
            HOST_LOST_GRACE_S: '1',
            // Uploads past this are refused: small, so a test can pass it cheaply.
            HOST_UPLOAD_MAX_BYTES: String(1024 * 1024),
            // Small, so the files tests can go past it (the default is 100 MiB).
            MAX_UPLOAD_BYTES: '1048576',
            // Small, so the relay's 413 is reachable with small bodies.
            RELAY_MAX_BODY_BYTES: String(1024 * 1024),
            // Scripted agents answer exactly what a test expects: no desktop start of their own at boot.
            DESKTOP_START: 'first-use',
          },
        },
      }),
    ],
    test: {
      include: ['test/worker/**/*.test.ts'],
      // A deadline, not a measure: other work on the machine may slow any test down.
      testTimeout: 30_000,
      setupFiles: ['test/worker/setup.ts'],
    },
  };
});
