/**
 * Escape suite, kernel surface: real computers of two tenants, and what root
 * inside one of them tries against the kernel they share with each other and
 * with the host. Every probe must be refused, and the computer must live on.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EPERM, NR, alive, asRoot, twoComputers } from './escape-probes.ts';

const t = twoComputers('attacker', 'bystander');

/** The host's block device holding its root file system, as major:minor. */
function hostRootDevice(): [number, number] {
  const dev = fs.statSync('/', { bigint: true }).dev;
  // glibc's gnu_dev_major / gnu_dev_minor
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

describe('escape attempts against the shared kernel', () => {
  it('kernel keyrings: root cannot add a key, so nothing reaches the other computer or host root', async () => {
    const description = `hangar-escape-${randomUUID()}`;
    const added = await asRoot(t.a, t.ida, `done(add=sys_call(${NR.add_key}, b"user", b"${description}", b"secret", 6, -4))`); // -4: the user keyring
    expect(added.add).toBe(EPERM);
    const found = await asRoot(t.b, t.idb, `done(find=sys_call(${NR.request_key}, b"user", b"${description}", 0, -4))`);
    expect(found.find).toBeLessThan(0);
    expect(fs.readFileSync('/proc/keys', 'utf8')).not.toContain(description);
    await alive(t.a, t.ida);
  });

  it('per-user limits: holding every inotify instance it can leaves the other computer and host root theirs', async () => {
    const holder = `
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while len(fds) < 100000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
open("/tmp/inotify-held", "w").write(str(len(fds)))
time.sleep(600)
`;
    await t.a.exec(t.ida, `cat > /tmp/hold.py <<'PY'\n${holder}\nPY\nsudo -n sh -c 'nohup python3 /tmp/hold.py >/dev/null 2>&1 &'`);
    let held = '';
    for (let i = 0; i < 100 && !held; i++) {
      held = (await t.a.exec(t.ida, 'cat /tmp/inotify-held 2>/dev/null')).body.output;
      if (!held) await new Promise((r) => setTimeout(r, 100));
    }
    try {
      expect(Number(held)).toBeGreaterThan(0);
      // The other computer's root and the host's root can still make one.
      const other = await asRoot(t.b, t.idb, `done(fd=sys_call(${NR.inotify_init1}, 0))`);
      expect(other.fd).toBeGreaterThanOrEqual(0);
      const host = spawnSync(process.execPath, ['-e', "require('fs').watch('/').close()"], { encoding: 'utf8' });
      expect(host.stderr).toBe('');
      expect(host.status).toBe(0);
    } finally {
      await t.a.exec(t.ida, 'sudo -n pkill -f /tmp/hold.py; true');
    }
  });

  it('devices: no block or char device can be made and opened anywhere, and /dev holds only the harmless ones', async () => {
    const [hostMajor, hostMinor] = hostRootDevice();
    const r = await asRoot<{ results: Record<string, string>; dev: string[]; nodes: string[]; mounts: Record<string, string[]> }>(
      t.a,
      t.ida,
      `
import stat
results = {}
targets = [("loop0", stat.S_IFBLK, 7, 0), ("kvm", stat.S_IFCHR, 10, 232), ("mem", stat.S_IFCHR, 1, 1), ("hostdisk", stat.S_IFBLK, ${hostMajor}, ${hostMinor})]
for d in ["/run/hangar", "/run", "/tmp", "/workspace", "/root", "/dev/shm", "/dev"]:
    for name, kind, major, minor in targets:
        p = f"{d}/escape-{name}"
        try:
            os.mknod(p, kind | 0o600, os.makedev(major, minor))
        except OSError as e:
            results[p] = "mknod " + errno.errorcode[e.errno]
            continue
        try:
            os.close(os.open(p, os.O_RDONLY))
            results[p] = "OPENED"
        except OSError as e:
            results[p] = "open " + errno.errorcode[e.errno]
        finally:
            os.unlink(p)
nodes = []
for root, dirs, files in os.walk("/dev"):
    for f in files:
        st = os.lstat(os.path.join(root, f))
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            nodes.append(f"{os.path.join(root, f)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
mounts = {}
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if fields[4] in ("/run/hangar", "/run/hangar-guest"):
        mounts[fields[4]] = sorted(fields[5].split(","))
done(results=results, dev=sorted(os.listdir("/dev")), nodes=sorted(nodes), mounts=mounts)
`,
    );
    expect(Object.entries(r.results).filter(([, v]) => v === 'OPENED')).toEqual([]);
    expect(Object.keys(r.results).length).toBe(28);
    expect(r.dev).toEqual(['fd', 'full', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
    expect(r.nodes).toEqual(['/dev/full 1:7', '/dev/null 1:3', '/dev/pts/ptmx 5:2', '/dev/random 1:8', '/dev/tty 5:0', '/dev/urandom 1:9', '/dev/zero 1:5']);
    // The only host paths inside: the guest's socket dir (this computer's own) and the guest's runtime.
    expect(r.mounts['/run/hangar']).toEqual(expect.arrayContaining(['nodev', 'nosuid', 'noexec']));
    expect(r.mounts['/run/hangar-guest']).toEqual(expect.arrayContaining(['ro', 'nodev', 'nosuid']));
    await alive(t.a, t.ida);
  });

  it('host file systems: no mount of any kind, not through the new mount API, not from a namespace of its own, and no raw read of the host disk', async () => {
    const [hostMajor, hostMinor] = hostRootDevice();
    const r = await asRoot(
      t.a,
      t.ida,
      `
facts = {}
os.makedirs("/mnt/escape", exist_ok=True)
facts["mount_proc"] = sh("mount -t proc proc /mnt/escape")["code"]
facts["mount_bind"] = sh("mount --bind / /mnt/escape")["code"]
facts["mount_tmpfs"] = sh("mount -t tmpfs t /mnt/escape")["code"]
facts["open_tree"] = sys_call(${NR.open_tree}, -100, b"/", 1)
facts["fsopen"] = sys_call(${NR.fsopen}, b"ext4", 0)
facts["own_namespace"] = sh("unshare -Urm sh -c 'mount -t tmpfs t /mnt/escape && echo mounted'")
try:
    os.mknod("/tmp/escape-hd", 0o600 | 0o060000, os.makedev(${hostMajor}, ${hostMinor}))
    with open("/tmp/escape-hd", "rb") as f:
        facts["raw_read"] = len(f.read(512))
except OSError as e:
    facts["raw_read"] = errno.errorcode[e.errno]
facts["mount_host_disk"] = sh("mount -t ext4 /tmp/escape-hd /mnt/escape")["code"]
facts["mnt_after"] = os.listdir("/mnt/escape")
done(**facts)
`,
    );
    for (const key of ['mount_proc', 'mount_bind', 'mount_tmpfs', 'mount_host_disk']) expect(r[key], key).not.toBe(0);
    expect(r).toMatchObject({ open_tree: EPERM, fsopen: EPERM, mnt_after: [] });
    const own = r.own_namespace as { code: number; err: string };
    expect(own.code).not.toBe(0);
    expect(own.err).not.toContain('mounted');
    expect(typeof r.raw_read).toBe('string'); // an errno name, never a byte count
    await alive(t.a, t.ida);
  });

  it('kernel tunables: no write to /proc/sys, /sys or sysrq, not even from a namespace of its own with a fresh /proc', async () => {
    const corePattern = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
    const r = await asRoot<Record<string, string | { code: number; err: string }>>(
      t.a,
      t.ida,
      `
facts = {}
for p, v in [("/proc/sys/kernel/core_pattern", "|/tmp/escape"), ("/proc/sys/vm/drop_caches", "3"), ("/proc/sys/kernel/modprobe", "/tmp/escape"),
             ("/proc/sysrq-trigger", "h"), ("/sys/kernel/uevent_helper", "/tmp/escape"), ("/sys/kernel/mm/transparent_hugepage/enabled", "never")]:
    try:
        with open(p, "w") as f:
            f.write(v)
        facts[p] = "WRITTEN"
    except OSError as e:
        facts[p] = errno.errorcode[e.errno]
facts["own_namespace"] = sh("unshare -Urmpf --mount-proc sh -c 'echo \\"|/tmp/escape\\" > /proc/sys/kernel/core_pattern && echo written'")
done(**facts)
`,
    );
    const { own_namespace: own, ...writes } = r;
    expect(Object.entries(writes).filter(([, v]) => v === 'WRITTEN')).toEqual([]);
    expect(Object.keys(writes).length).toBe(6);
    expect((own as { code: number }).code).not.toBe(0);
    // Refused at the first step: no namespace of its own to mount a fresh /proc in.
    expect((own as { err: string }).err).toContain('unshare failed: Operation not permitted');
    expect(fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).toBe(corePattern);
    await alive(t.a, t.ida);
  });

  it('kernel modules: no loading or unloading, not even from a namespace of its own', async () => {
    // A kernel without module support has no /proc/modules.
    const modules = fs.existsSync('/proc/modules') ? fs.readFileSync('/proc/modules', 'utf8') : '';
    const r = await asRoot(
      t.a,
      t.ida,
      `
fd = os.open("/bin/true", os.O_RDONLY)
image = open("/bin/true", "rb").read()
done(
    finit=sys_call(${NR.finit_module}, fd, b"", 0),
    init=sys_call(${NR.init_module}, image, len(image), b""),
    delete=sys_call(${NR.delete_module}, b"loop", 0),
    own_namespace=sh("unshare -Ur true"),
)
`,
    );
    expect(r).toMatchObject({ finit: EPERM, init: EPERM, delete: EPERM });
    expect((r.own_namespace as { code: number }).code).not.toBe(0);
    if (modules) expect(fs.readFileSync('/proc/modules', 'utf8')).toBe(modules);
    await alive(t.a, t.ida);
  });

  it('user namespaces inside are refused, to user and root alike (EPERM), and the computer lives on', async () => {
    const asUser = await t.a.exec(t.ida, 'unshare -U true; echo "u=$?"; unshare -Ur id; echo "r=$?"');
    expect(asUser.body.output).toMatch(/u=1\n/);
    expect(asUser.body.output).toMatch(/r=1\n/);
    expect(asUser.body.output).toMatch(/Operation not permitted/);
    const root = await asRoot(t.a, t.ida, `done(unshare=sys_call(${NR.unshare}, 0x10000000), cmd=sh("unshare -U true"))`);
    expect(root.unshare).toBe(EPERM);
    expect((root.cmd as { code: number }).code).not.toBe(0);
    await alive(t.a, t.ida);
    await alive(t.b, t.idb);
  });
});
