/**
 * Escape suite, kernel surface: real computers of two tenants, and what root
 * inside one of them tries against the kernel, the host and the other computer.
 *
 * A sandbox shares the host's kernel, so there every probe must be refused.
 * A VM has a kernel of its own: root inside may mount, load modules, make
 * namespaces and keys in it, and that is no escape. There the probes check
 * what a VM must guarantee instead: doing those things changes nothing on the
 * host or in the other computer, the only disks inside are the VM's own (the
 * template's read-only base cannot be written), and no way leads from inside to
 * the host's services or to the other computer. Whatever holds on both drivers
 * is one assertion for both; the computer must live on either way.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { DNS_FORWARD_ADDR } from '../../host-agent/drivers/sandbox/host-config.ts';
import { hangar } from './client.ts';
import { EPERM, NR, alive, asRoot, twoComputers } from './escape-probes.ts';
import { ISOLATION, vmDriveFiles } from './isolation-under-test.ts';

const vm = ISOLATION === 'vm';

const t = twoComputers('attacker', 'bystander');

/** Python: tries a TCP connection to each of `targets` ([address, port] pairs) into `results`. */
const CONNECT_EACH = `import socket
results = {}
for addr, port in targets:
    try:
        socket.create_connection((addr, port), 3).close()
        results[f"{addr} {port}"] = "CONNECTED"
    except OSError as e:
        results[f"{addr} {port}"] = errno.errorcode.get(e.errno, "timeout") if e.errno else "timeout"`;

/** The host's block device holding its root file system, as major:minor. */
function hostRootDevice(): [number, number] {
  const dev = fs.statSync('/', { bigint: true }).dev;
  // glibc's gnu_dev_major / gnu_dev_minor
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

describe('escape attempts against the shared kernel', () => {
  it('kernel keyrings: a key root adds (refused in a sandbox, in its own kernel in a VM) reaches neither the other computer nor host root', async () => {
    const description = `hangar-escape-${randomUUID()}`;
    const added = await asRoot(t.a, t.ida, `done(add=sys_call(${NR.add_key}, b"user", b"${description}", b"secret", 6, -4))`); // -4: the user keyring
    // A key serial on success: in a VM the probe really made one, so what follows looks for a key that exists.
    if (vm) expect(added.add).toBeGreaterThan(0);
    else expect(added.add).toBe(EPERM);
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

  it.skipIf(vm)('devices: no block or char device can be made and opened anywhere, and /dev holds only the harmless ones', async () => {
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

  it.runIf(vm)("disks: the only block devices inside are the VM's own three (its disk, the template's read-only base, the guest runtime's image); root cannot write the base, raw or by a mount", async () => {
    const files = vmDriveFiles(hangar().dataDir, t.ida);
    expect(files && Object.keys(files).sort()).toEqual(['hangar-base', 'hangar-disk', 'hangar-guest']);
    const base = files!['hangar-base'];
    const fingerprint = () => {
      const fd = fs.openSync(base, 'r');
      try {
        const head = Buffer.alloc(1 << 20);
        fs.readSync(fd, head, 0, head.length, 0);
        return `${fs.fstatSync(fd).mtimeMs} ${createHash('sha256').update(head).digest('hex')}`;
      } finally {
        fs.closeSync(fd);
      }
    };
    const before = fingerprint();
    const r = await asRoot<{ disks: Record<string, { serial: string; ro: number; bytes: number }>; setrw: number; raw_write: { code: number }; mount_rw: { code: number }; mount_tmpfs: number; mounts: Record<string, string[]> }>(
      t.a,
      t.ida,
      `
disks = {}
for name in sorted(os.listdir("/sys/block")):
    b = f"/sys/block/{name}"
    serial = open(f"{b}/serial").read().strip() if os.path.exists(f"{b}/serial") else ""
    disks[name] = {"serial": serial, "ro": int(open(f"{b}/ro").read()), "bytes": int(open(f"{b}/size").read()) * 512}
base = "/dev/" + next(n for n, d in disks.items() if d["serial"] == "hangar-base")
os.makedirs("/mnt/escape", exist_ok=True)
facts = {"disks": disks}
# Root asks its kernel to treat the base as writable, then writes its first block past the page cache.
facts["setrw"] = sh(f"blockdev --setrw {base}")["code"]
facts["raw_write"] = sh(f"dd if=/dev/urandom of={base} bs=4096 count=1 oflag=direct conv=notrunc,fsync")
# -w: no quiet fallback to a read-only mount.
facts["mount_rw"] = sh(f"mount -w -t ext4 {base} /mnt/escape")
# Its own kernel lets root mount (a tmpfs here): that is inside the VM only.
facts["mount_tmpfs"] = sh("mount -t tmpfs t /mnt/escape")["code"]
mounts = {}
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    mounts[fields[4]] = sorted(fields[5].split(","))
done(mounts=mounts, **facts)
`,
    );
    // Each device inside is one of the VM's files on the host, whole: same serial, same size; nothing else is there.
    expect(Object.values(r.disks).map((d) => d.serial).sort()).toEqual(['hangar-base', 'hangar-disk', 'hangar-guest']);
    for (const d of Object.values(r.disks)) {
      expect(d.bytes, d.serial).toBe(fs.statSync(files![d.serial]).size);
      expect(d.ro, d.serial).toBe(d.serial === 'hangar-disk' ? 0 : 1);
    }
    expect(r.raw_write.code, JSON.stringify(r.raw_write)).not.toBe(0);
    expect(r.mount_rw.code, JSON.stringify(r.mount_rw)).not.toBe(0);
    expect(fingerprint()).toBe(before);
    expect(r.mount_tmpfs).toBe(0);
    expect(r.mounts['/mnt/escape']).toBeDefined();
    expect(r.mounts['/run/hangar-guest']).toEqual(expect.arrayContaining(['ro', 'nodev', 'nosuid']));
    // The other computer's mounts are its own.
    expect((await t.b.exec(t.idb, 'grep -c " /mnt/escape " /proc/self/mountinfo')).body.output).toBe('0\n');
    await alive(t.a, t.ida);
  });

  it.skipIf(vm)('host file systems: no mount of any kind, not through the new mount API, not from a namespace of its own, and no raw read of the host disk', async () => {
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

  it("kernel tunables: root's writes to /proc/sys, /sys and sysrq (refused in a sandbox, even from a namespace of its own; its own kernel's in a VM) change neither the host's nor the other computer's", async () => {
    const tunables = ['/proc/sys/kernel/core_pattern', '/proc/sys/kernel/modprobe', '/sys/kernel/mm/transparent_hugepage/enabled'];
    const read = (p: string) => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : '');
    const hostBefore = tunables.map(read);
    const otherTunables = () => t.b.exec(t.idb, 'cat /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe');
    const otherBefore = (await otherTunables()).body.output;
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
    expect(Object.keys(writes).length).toBe(6);
    if (vm) {
      // Root of its own kernel: the write really happened in there.
      expect(writes['/proc/sys/kernel/core_pattern']).toBe('WRITTEN');
    } else {
      expect(Object.entries(writes).filter(([, v]) => v === 'WRITTEN')).toEqual([]);
      expect((own as { code: number }).code).not.toBe(0);
      // Refused at the first step: no namespace of its own to mount a fresh /proc in.
      expect((own as { err: string }).err).toContain('unshare failed: Operation not permitted');
    }
    expect(tunables.map(read)).toEqual(hostBefore);
    expect((await otherTunables()).body.output).toBe(otherBefore);
    await alive(t.a, t.ida);
  });

  it("kernel modules: no loading or unloading (in a sandbox not even from a namespace of its own; in a VM only its own kernel's), and the host's and the other computer's modules stay as they were", async () => {
    // A kernel without module support has no /proc/modules.
    const modules = fs.existsSync('/proc/modules') ? fs.readFileSync('/proc/modules', 'utf8') : '';
    const otherModules = async () => (await t.b.exec(t.idb, 'cut -d" " -f1 /proc/modules 2>/dev/null | sort')).body.output;
    const otherBefore = await otherModules();
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
    if (vm) {
      // Its own kernel hears root out, and refuses /bin/true for not being a module.
      for (const key of ['finit', 'init']) {
        expect(r[key], key).toBeLessThan(0);
        expect(r[key], key).not.toBe(EPERM);
      }
    } else {
      expect(r).toMatchObject({ finit: EPERM, init: EPERM, delete: EPERM });
      expect((r.own_namespace as { code: number }).code).not.toBe(0);
    }
    if (modules) expect(fs.readFileSync('/proc/modules', 'utf8')).toBe(modules);
    expect(await otherModules()).toBe(otherBefore);
    await alive(t.a, t.ida);
  });

  it("user namespaces inside are refused to user and root alike (EPERM) in a sandbox, are its own kernel's business in a VM, and both computers live on", async () => {
    const asUser = await t.a.exec(t.ida, 'unshare -U true; echo "u=$?"; unshare -Ur id; echo "r=$?"');
    const root = await asRoot(t.a, t.ida, `done(unshare=sys_call(${NR.unshare}, 0x10000000), cmd=sh("unshare -U true"))`);
    // In a VM whether a namespace may be made is its own kernel's policy, and whatever it holds stays in there.
    if (!vm) {
      expect(asUser.body.output).toMatch(/u=1\n/);
      expect(asUser.body.output).toMatch(/r=1\n/);
      expect(asUser.body.output).toMatch(/Operation not permitted/);
      expect(root.unshare).toBe(EPERM);
      expect((root.cmd as { code: number }).code).not.toBe(0);
    }
    await alive(t.a, t.ida);
    await alive(t.b, t.idb);
  });

  it("signals: root and user sending SIGKILL to every process they can reach end only their own computer's; the other computer's and the host's (root's and its user's uid) live on", async () => {
    // Host processes as root and as the uid the computer's user has inside.
    const hostRoot = spawn('sleep', ['600'], { stdio: 'ignore' });
    const hostUser = spawn('sleep', ['600'], { stdio: 'ignore', uid: 1000, gid: 1000 });
    const running = (p: ReturnType<typeof spawn>) => p.exitCode === null && p.signalCode === null;
    try {
      for (const [api, id] of [[t.a, t.ida], [t.b, t.idb]] as const) {
        expect(await api.exec(id, 'nohup sleep 600 >/dev/null 2>&1 & echo started')).toMatchObject({ status: 200, body: { output: 'started\n' } });
      }
      // By the host's pid numbers, then everything: as the user, then as root.
      await t.a.exec(t.ida, `kill -9 ${hostRoot.pid} ${hostUser.pid}; sudo -n kill -9 ${hostRoot.pid} ${hostUser.pid}; kill -9 -1`);
      await t.a.exec(t.ida, 'sudo -n kill -9 -1');
      await alive(t.a, t.ida);
      await new Promise((r) => setTimeout(r, 500));
      expect(running(hostRoot)).toBe(true);
      expect(running(hostUser)).toBe(true);
      // The probe did reach what it could: its own computer's sleep is gone.
      expect((await t.a.exec(t.ida, 'pgrep -x sleep >/dev/null && echo there || echo gone')).body.output).toBe('gone\n');
      expect((await t.b.exec(t.idb, 'pgrep -x sleep >/dev/null && echo there')).body.output).toBe('there\n');
    } finally {
      hostRoot.kill('SIGKILL');
      hostUser.kill('SIGKILL');
      await t.b.exec(t.idb, 'pkill -x sleep; true');
    }
  });

  it("network: nothing on the host listening on its loopback or on its own addresses (a test server, the API), nor the other computer's server, is reachable from inside; the probe does reach a server of its own", async () => {
    // Host servers that count every connection they get: one on loopback only, one on every address.
    let accepted = 0;
    const listen = (host: string) =>
      new Promise<net.Server>((resolve) => {
        const server = net.createServer((c) => {
          accepted++;
          c.destroy();
        });
        server.listen(0, host, () => resolve(server));
      });
    const servers = await Promise.all([listen('127.0.0.1'), listen('::')]);
    const ports = [...servers.map((s) => (s.address() as net.AddressInfo).port), Number(new URL(hangar().origin).port)];
    const hostAddresses = Object.values(os.networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal && !a.address.startsWith('fe80'))
      .map((a) => a!.address);
    const OTHER_PORT = 18_080;
    const OWN_PORT = 18_081;
    try {
      // The other computer serves on every address it has; it reaches its own server (so there is one to find).
      await t.b.exec(t.idb, `nohup python3 -m http.server ${OTHER_PORT} --bind 0.0.0.0 >/dev/null 2>&1 & echo started`);
      await t.a.exec(t.ida, `nohup python3 -m http.server ${OWN_PORT} --bind 127.0.0.1 >/dev/null 2>&1 & echo started`);
      const reach = `python3 -c "import socket,sys,time
for i in range(600):
    try:
        socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2).close(); print('up'); break
    except OSError:
        time.sleep(0.2)
else:
    print('down')"`;
      expect((await t.b.exec(t.idb, `${reach} ${OTHER_PORT}`)).body.output).toBe('up\n');
      expect((await t.a.exec(t.ida, `${reach} ${OWN_PORT}`)).body.output).toBe('up\n');
      const otherAddresses = (await t.b.exec(t.idb, 'hostname -I')).body.output.trim().split(/\s+/).filter(Boolean);

      const targets = [
        ...['127.0.0.1', '::1', DNS_FORWARD_ADDR, ...hostAddresses].flatMap((addr) => ports.map((port) => [addr, port] as const)),
        ...otherAddresses.map((addr) => [addr, OTHER_PORT] as const),
        ['127.0.0.1', OWN_PORT] as const,
      ];
      const r = await asRoot<{ results: Record<string, string> }>(
        t.a,
        t.ida,
        `
import socket
targets = ${JSON.stringify(targets)}
# The default gateway, as the computer's routes name it.
for line in open("/proc/net/route").readlines()[1:]:
    f = line.split()
    if f[1] == "00000000":
        gw = socket.inet_ntoa(int(f[2], 16).to_bytes(4, "little"))
        targets += [[gw, p] for p in ${JSON.stringify([...ports, OTHER_PORT])}]
${CONNECT_EACH}
done(results=results)
`,
        180,
      );
      expect(r.results[`127.0.0.1 ${OWN_PORT}`]).toBe('CONNECTED');
      const { [`127.0.0.1 ${OWN_PORT}`]: _own, ...others } = r.results;
      expect(Object.keys(others).length, JSON.stringify({ targets, results: r.results })).toBeGreaterThanOrEqual(targets.length - 1 + 1);
      expect(Object.entries(others).filter(([, v]) => v === 'CONNECTED')).toEqual([]);
      expect(accepted).toBe(0);

      // Root gives up the addresses it was handed and takes others, so the host's addresses are no
      // longer its own and what it sends to them leaves the computer. In a VM root may (its own
      // kernel): the network relay must still lead nowhere on the host. In a sandbox it may not.
      const renumbered = await asRoot<{ renumber: { code: number; err: string }; results: Record<string, string>; restore: { code: number; err: string } }>(
        t.a,
        t.ida,
        `
import ipaddress, socket
route = subprocess.run("ip -o -4 route show default", shell=True, capture_output=True, text=True).stdout.split()
dev, gw = route[route.index("dev") + 1], route[route.index("via") + 1]
own = [l.split()[3] for l in subprocess.run(f"ip -o addr show dev {dev} scope global", shell=True, capture_output=True, text=True).stdout.splitlines()]
def other(a, k):
    i = ipaddress.ip_interface(a)
    n = i.network.network_address + 77 + k
    return f"{n if n != i.ip else n + 100}/{i.network.prefixlen}"
def add(a):
    return f"ip addr add {a} dev {dev}{' nodad' if ':' in a else ''}; "
taken = [other(a, k) for k, a in enumerate(own)]
cmd = "set -e; " + "".join(f"ip addr del {a} dev {dev}; " for a in own) + "".join(add(a) for a in taken)
renumber = sh(cmd + f"ip route replace default via {gw} dev {dev}; sleep 2")
targets = ${JSON.stringify(hostAddresses.flatMap((addr) => ports.map((port) => [addr, port] as const)))}
${CONNECT_EACH}
restore = sh("".join(f"ip addr del {a} dev {dev}; " for a in taken) + "".join(add(a) for a in own) + f"ip route replace default via {gw} dev {dev}")
done(renumber=renumber, results=results, restore=restore)
`,
        180,
      );
      if (vm) expect(renumbered.renumber.code, renumbered.renumber.err).toBe(0);
      else expect(renumbered.renumber.err).toMatch(/Operation not permitted/);
      expect(Object.keys(renumbered.results).length).toBe(hostAddresses.length * ports.length);
      expect(Object.entries(renumbered.results).filter(([, v]) => v === 'CONNECTED')).toEqual([]);
      expect(accepted).toBe(0);
    } finally {
      await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
      await t.a.exec(t.ida, `pkill -f "http.server ${OWN_PORT}"; true`);
      await t.b.exec(t.idb, `pkill -f "http.server ${OTHER_PORT}"; true`);
    }
    await alive(t.a, t.ida);
    await alive(t.b, t.idb);
  });
});
