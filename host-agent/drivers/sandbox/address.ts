/**
 * A running computer's own address inside its network namespace, as the API
 * shows it (`ip_address`). Read from the kernel's view of that namespace
 * (/proc/<pid>/net of a process in it) rather than by running anything there.
 */
import fs from 'node:fs';

/** The first non-loopback IPv4 address local to the namespace of `pid`, else its first global IPv6 one; null when it has none. */
export function namespaceAddress(pid: number): string | null {
  return localIpv4(read(`/proc/${pid}/net/fib_trie`)) ?? globalIpv6(read(`/proc/${pid}/net/if_inet6`));
}

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** fib_trie lists each address as a `|-- a.b.c.d` line followed by its route; `/32 host LOCAL` marks an address of this namespace. */
export function localIpv4(fibTrie: string): string | null {
  const lines = fibTrie.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const m = /\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(lines[i].trim());
    if (m && /\/32 host LOCAL/.test(lines[i + 1]) && !m[1].startsWith('127.')) return m[1];
  }
  return null;
}

/** if_inet6 rows: 32 hex digits, interface index, prefix length, scope (00 is global), flags, name. */
export function globalIpv6(ifInet6: string): string | null {
  for (const line of ifInet6.split('\n')) {
    const [hex, , , scope] = line.trim().split(/\s+/);
    if (hex?.length === 32 && scope === '00') return hex.match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, '')).join(':');
  }
  return null;
}
