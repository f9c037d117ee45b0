/**
 * What computers inherit from the host's own configuration: its Debian mirror
 * and apt setup, its pip index, its DNS servers. Operators often run hosts
 * behind a local mirror; computers should install packages exactly as the
 * host does.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

/** The host's main Debian archive URI (not the security archive), for debootstrap. */
export function hostDebianMirror(): string {
  const uris: string[] = [];
  for (const file of aptSourceFiles()) {
    const text = readText(file);
    if (file.endsWith('.sources')) {
      // deb822: stanzas of "Key: value" lines.
      for (const stanza of text.split(/\n\s*\n/)) {
        const types = /^Types:\s*(.+)$/im.exec(stanza)?.[1] ?? '';
        const enabled = !/^Enabled:\s*no\s*$/im.test(stanza);
        const u = /^URIs:\s*(.+)$/im.exec(stanza)?.[1];
        if (u && enabled && types.split(/\s+/).includes('deb')) uris.push(...u.trim().split(/\s+/));
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line);
        if (m) uris.push(m[1]);
      }
    }
  }
  const main = uris.find((u) => /^https?:\/\//.test(u) && /\/debian\/?$/.test(u));
  return (main ?? FALLBACK_MIRROR).replace(/\/$/, '');
}

/** Files apt reads its sources from (others in sources.list.d are ignored by apt too). */
export function aptSourceFiles(): string[] {
  const files: string[] = [];
  if (fs.existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  files.push(...listDir('/etc/apt/sources.list.d').filter((f) => f.endsWith('.list') || f.endsWith('.sources')));
  return files;
}

/**
 * Every host file a computer's apt needs, as absolute paths: sources,
 * apt.conf.d snippets, trusted keys, and the keyrings sources name in Signed-By.
 */
export function aptConfigFiles(): string[] {
  const sources = aptSourceFiles();
  const keyrings = new Set<string>();
  for (const file of sources) {
    for (const m of readText(file).matchAll(/(?:Signed-By:\s*|signed-by=)(\/[^\s\]]+)/gi)) {
      if (fs.existsSync(m[1])) keyrings.add(m[1]);
    }
  }
  return [
    ...sources,
    ...listDir('/etc/apt/apt.conf.d'),
    ...listDir('/etc/apt/trusted.gpg.d'),
    ...(fs.existsSync('/etc/apt/trusted.gpg') ? ['/etc/apt/trusted.gpg'] : []),
    ...keyrings,
  ].sort();
}

/** The pip configuration files pip reads on this host, in order (site, then the agent user's). */
export function hostPipConfFiles(): string[] {
  const home = os.homedir();
  return ['/etc/xdg/pip/pip.conf', '/etc/pip.conf', path.join(home, '.pip/pip.conf'), path.join(home, '.config/pip/pip.conf')];
}

/** pip settings whose values are files pip opens (a constraint file, a CA bundle...). */
const FILE_SETTINGS = new Set(['constraint', 'requirement', 'cert', 'client-cert']);

export interface PipSetup {
  /** One pip.conf for computers; empty when the host has no pip configuration. */
  conf: string;
  /** Host files that configuration names, to be baked into the template at the same path. */
  files: string[];
}

/**
 * The host's effective pip configuration for computers: the files pip reads
 * (later ones winning) plus PIP_* variables of the agent's environment, merged
 * per section, and the local files it names. Those files must exist inside a
 * computer too, or pip fails there (a constraint file it cannot open is an
 * error): the template gets a copy of each at the same path; a setting naming
 * a file the host does not have either is left out, as it could not work.
 * Local directories it names (file:// indexes, find-links) are shared read-only
 * instead (pipMirrorDirs).
 */
export function hostPipSetup(env: NodeJS.ProcessEnv = process.env, confFiles: string[] = hostPipConfFiles()): PipSetup {
  const sections = new Map<string, Map<string, string>>();
  for (const file of confFiles) {
    if (fs.existsSync(file)) mergeIni(sections, readText(file));
  }
  // Timeouts and version checks are the agent's business; index settings are the mirror's.
  const wanted = ['PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS', 'PIP_TRUSTED_HOST', 'PIP_CERT', 'PIP_NO_INDEX'];
  for (const name of wanted) {
    const value = env[name];
    if (value) section(sections, 'global').set(name.slice(4).toLowerCase().replace(/_/g, '-'), value);
  }
  const files = new Set<string>();
  for (const entries of sections.values()) {
    for (const [key, value] of entries) {
      if (!FILE_SETTINGS.has(key.replace(/_/g, '-'))) continue;
      const named = value.split(/\s+/).filter(Boolean);
      const usable = named.filter((f) => path.isAbsolute(f) && fs.statSync(f, { throwIfNoEntry: false })?.isFile());
      for (const f of usable) files.add(f);
      if (usable.length === 0) entries.delete(key);
      else entries.set(key, usable.join('\n'));
    }
  }
  let conf = '';
  for (const [name, entries] of sections) {
    if (entries.size === 0) continue;
    conf += `[${name}]\n`;
    for (const [k, v] of entries) conf += `${k} = ${v.replace(/\n/g, '\n    ')}\n`;
    conf += '\n';
  }
  return { conf, files: [...files].sort() };
}

function mergeIni(sections: Map<string, Map<string, string>>, text: string): void {
  let current: Map<string, string> | null = null;
  let lastKey: string | null = null;
  for (const raw of text.split('\n')) {
    if (/^\s*([#;]|$)/.test(raw)) continue;
    const header = /^\s*\[([^\]]+)\]\s*$/.exec(raw);
    if (header) {
      current = section(sections, header[1].trim());
      lastKey = null;
      continue;
    }
    if (!current) continue;
    if (/^\s/.test(raw) && lastKey) {
      current.set(lastKey, `${current.get(lastKey)}\n${raw.trim()}`); // continuation line
      continue;
    }
    const kv = /^\s*([^=:]+?)\s*[=:]\s*(.*)$/.exec(raw);
    if (kv) {
      lastKey = kv[1].toLowerCase();
      current.set(lastKey, kv[2].trim());
    }
  }
}

function section(sections: Map<string, Map<string, string>>, name: string): Map<string, string> {
  let s = sections.get(name);
  if (!s) sections.set(name, (s = new Map()));
  return s;
}

/**
 * DNS for computers. Non-loopback host nameservers work from inside (pasta
 * relays the packets from the host). A loopback resolver (systemd-resolved's
 * 127.0.0.53) is unreachable from another network namespace, so then the
 * computer asks DNS_FORWARD_ADDR, which pasta relays to the host's resolver.
 */
export const DNS_FORWARD_ADDR = '169.254.1.53';

/**
 * Local directories the host's pip reads packages from (file:// indexes,
 * find-links paths). Computers inherit the host's pip configuration, so these
 * are shared with them read-only; otherwise that configuration would point at
 * nothing inside a computer. An index at …/simple is shared from its parent,
 * where such mirrors keep the files the index links to.
 */
export function pipMirrorDirs(env: NodeJS.ProcessEnv = process.env, confFiles: string[] = hostPipConfFiles()): string[] {
  const dirs = new Set<string>();
  for (const m of hostPipSetup(env, confFiles).conf.matchAll(/(?:file:\/\/)?(\/[^\s,;]+)/g)) {
    let dir = m[1].replace(/\/+$/, '');
    if (/\.(pem|crt)$/.test(dir)) continue;
    if (dir.endsWith('/simple')) dir = path.dirname(dir);
    try {
      if (fs.statSync(dir).isDirectory()) dirs.add(dir);
    } catch {
      /* not on this host: nothing to share */
    }
  }
  return [...dirs].sort();
}

export function computerResolvConf(): { text: string; dnsForward: boolean } {
  const lines = readText('/etc/resolv.conf').split('\n');
  const servers = lines.map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((s): s is string => !!s);
  const usable = servers.filter((s) => !/^127\.|^::1$/.test(s));
  const extra = lines.filter((l) => /^\s*(search|domain|options)\s/.test(l));
  if (usable.length > 0) {
    return { text: [...usable.map((s) => `nameserver ${s}`), ...extra].join('\n') + '\n', dnsForward: false };
  }
  return { text: [`nameserver ${DNS_FORWARD_ADDR}`, ...extra].join('\n') + '\n', dnsForward: true };
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function listDir(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}
