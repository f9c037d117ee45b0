import { defineConfig } from 'vitest/config';

// Node-side tests: the host agent and its sandbox driver, and end-to-end tests
// that start the real Worker (workerd) and a real host agent once for all files.
export default defineConfig({
  test: {
    include: ['test/host-agent/**/*.test.ts', 'test/agent-sessions/**/*.test.ts', 'test/inference/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    environment: 'node',
    testTimeout: 180_000,
    hookTimeout: 600_000,
    globalSetup: ['test/e2e/global-setup.ts'],
    // Sandboxes and workerd are heavy on a 2-core machine: one file at a time.
    fileParallelism: false,
  },
});
