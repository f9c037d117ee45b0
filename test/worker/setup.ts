import { applyD1Migrations, env } from 'cloudflare:test';

type Migration = Parameters<typeof applyD1Migrations>[1][number];
await applyD1Migrations(env.DB, (env as unknown as { TEST_MIGRATIONS: Migration[] }).TEST_MIGRATIONS);
