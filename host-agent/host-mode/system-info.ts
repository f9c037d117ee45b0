/**
 * What a host-mode agent says of its machine in its hello — OS, release,
 * architecture, CPUs, memory, the user it runs as, whether it can make
 * terminals — and the preflight that decides whether it can serve at all.
 * Everything through Node's portable APIs (os, fs): no Linux-only files.
 */
import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROTOCOL, type HostModeHello } from '../../schema/protocol.ts';
import { AGENT_VERSION } from '../version.ts';

/** The oldest Node the agent (and its one-file bundle) runs on. */
export const MIN_NODE_MAJOR = 20;

export interface MachineFacts {
  home: string;
  user: HostModeHello['user'];
  /** `script`, when terminals can be made. */
  script: string | null;
  fsRoot: string | null;
}

export function machineFacts(opts: { script: string | null; fsRoot: string | null }): MachineFacts {
  const info = os.userInfo();
  const home = os.homedir() || info.homedir;
  const shell = info.shell || process.env.SHELL || null;
  return { home, user: { name: info.username, home, shell: shell && shell !== '' ? shell : null }, script: opts.script, fsRoot: opts.fsRoot };
}

const isDir = (p: string) => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

/** Why this agent cannot serve, or null when it can. */
export function preflight(facts: MachineFacts): string | null {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < MIN_NODE_MAJOR) return `Node.js ${process.version} is too old; the agent needs ${MIN_NODE_MAJOR} or newer`;
  if (!isDir(facts.home)) return `the home directory ${facts.home} of user ${facts.user.name} is missing or not readable`;
  if (facts.fsRoot !== null && (!path.isAbsolute(facts.fsRoot) || !isDir(facts.fsRoot))) return `--fs-root ${facts.fsRoot} is not an existing directory`;
  return null;
}

/** The hello of a host-mode agent. */
export function hostHello(facts: MachineFacts, procs: string[], fault: string | null): HostModeHello {
  return {
    type: 'hello',
    mode: 'host',
    protocol: PROTOCOL,
    agent_version: AGENT_VERSION,
    hostname: os.hostname().slice(0, 255),
    os: process.platform,
    os_release: os.release().slice(0, 255),
    arch: process.arch,
    cpus: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
    memory_mb: Math.max(1, Math.round(os.totalmem() / 1024 / 1024)),
    node_version: process.version,
    user: facts.user,
    fs_root: facts.fsRoot,
    terminal: facts.script !== null,
    procs,
    fault,
  };
}
