/**
 * Shared setup of the sandbox tests: a driver on a stable data dir (so the
 * template, built once, is reused while its recipe hash matches), fresh
 * computer ids per test, and every computer destroyed afterwards.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import type { ComputerDriver } from '../../host-agent/drivers/driver.ts';
import { computerPaths } from '../../host-agent/drivers/sandbox/paths.ts';
import { pipMirrorDirs } from '../../host-agent/drivers/sandbox/host-config.ts';
import { useSharedTemplates } from '../shared-template.ts';

/**
 * Not the agent's /var/lib/hangar: an agent serving a server (the e2e suite
 * starts one) removes computers on its disk that the server does not know,
 * which would include these tests' computers.
 */
export const DATA_DIR = process.env.HANGAR_TEST_DATA_DIR ?? '/var/lib/hangar-test';
/** The host's local package mirror, if its pip config names one, shared into computers as the agent does. */
export const SHARES = pipMirrorDirs();

export function newDriver(): SandboxDriver {
  useSharedTemplates(DATA_DIR);
  return new SandboxDriver({ dataDir: DATA_DIR, shareReadOnly: SHARES });
}

export function newSpec(overrides: Partial<ComputerSpec> = {}): ComputerSpec {
  return {
    id: randomUUID(),
    name: 'Test Computer',
    template: 'miosa-desktop',
    size: 'small',
    vcpus: 1,
    memory_mb: 4096,
    selected_apps: [],
    env: {},
    ...overrides,
  };
}

/** Builds the template if needed (minutes the first time, instant after). */
export async function prepareTemplate(driver: SandboxDriver): Promise<void> {
  await driver.prepare((p) => {
    if (p.phase === 'template' && (p.fraction === 1 || p.fraction === 0)) console.log(`[template] ${p.message}`);
  });
}

/** Tracks computers made by a test file and destroys them all at the end. */
export class Computers {
  private readonly ids = new Set<string>();
  /** A getter, because a test may replace its driver (agent restart). */
  private readonly driver: () => ComputerDriver;

  constructor(driver: () => ComputerDriver) {
    this.driver = driver;
  }

  async create(overrides: Partial<ComputerSpec> = {}, cloneFrom?: string): Promise<ComputerSpec> {
    const spec = newSpec(overrides);
    this.ids.add(spec.id);
    await this.driver().provision(spec, cloneFrom, () => undefined);
    return spec;
  }

  async destroyAll(): Promise<void> {
    for (const id of this.ids) await this.driver().destroy(id);
    this.ids.clear();
  }
}

export const guestSocket = (id: string) => computerPaths(fs.realpathSync(DATA_DIR), id).socket;
