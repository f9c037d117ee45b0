"""One computer's processes, in the order the kernel needs them.

  launcher (L)   host root, in the host's namespaces; joins the computer's cgroups,
                 takes a uid range, and lives as long as the computer (the host
                 agent records its pid: killing it ends the computer).
  holder (C)     forked by L; drops to the range's first host uid and unshares a
                 user namespace together with mount, uts, ipc, net, cgroup and pid
                 namespaces, which the new user namespace therefore owns. The user
                 namespace's owner is that host uid, not root: per-user kernel
                 limits (inotify instances, ...) of everything inside are charged
                 to it, never to host root or another computer.
                 L then writes C's uid/gid maps and attaches the idmapped disks
                 (mounts.attach_disks) and moves C into the devices cgroup.
  pid 1 (I)      forked by C into the new pid namespace: builds the root
                 (mounts.build_root), drops the capability bounding set to
                 Docker's, installs the seccomp filter and becomes the guest agent.

L tells the host agent on fd 3, one JSON line each: the pid whose namespaces
pasta must join and the uid range as soon as they exist (the network comes up
while the root is built), then the disk fd once the disks are attached.
"""

import json
import os
import signal
import sys

from . import mounts, seccomp, uid_ranges
from . import syscalls as sc

NS_FLAGS = sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET | sc.CLONE_NEWCGROUP | sc.CLONE_NEWPID

# Docker's default capability set; root inside keeps no more than these (none of them reaches
# past the computer's user namespace).
KEPT_CAPS = {0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31}  # chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap
LAST_CAP_FALLBACK = 40


def log(*parts):
    print("hangar-init:", *parts, file=sys.stderr, flush=True)


def die_with_parent(parent):
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before we asked


def read_byte(fd):
    data = os.read(fd, 1)
    if not data:
        os._exit(1)  # the other side died
    return data


def last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return LAST_CAP_FALLBACK


def drop_capabilities():
    for cap in range(last_cap() + 1):
        if cap not in KEPT_CAPS:
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)


def pid1(cfg):
    """I: the computer's first process."""
    try:
        mounts.build_root(cfg)
        os.umask(0o022)
        drop_capabilities()
        seccomp.install()
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HANGAR_BOOT_ID": cfg["boot_id"]}
        argv = cfg["guest_argv"]
        os.execve(argv[0], argv, env)
    except BaseException as e:  # noqa: BLE001 - pid 1 must say why it could not start, whatever it was
        log(f"the computer could not start: {e}")
        os._exit(1)


def holder(cfg, launcher_pid, uid_base, to_launcher, from_launcher):
    """C: owns the namespaces; parent of pid 1."""
    try:
        os.setgroups([])
        os.setresgid(uid_base, uid_base, uid_base)
        os.setresuid(uid_base, uid_base, uid_base)
        die_with_parent(launcher_pid)  # after the uid change, which clears the death signal
        # The uid change also made us undumpable, which would keep pasta (running as the range's
        # first uid, the owner of our user namespace) from opening our network namespace.
        sc.prctl(sc.PR_SET_DUMPABLE, 1)
        sc.unshare(NS_FLAGS)
        # Nothing mounted here may propagate anywhere (the host's mounts are only our slaves now).
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        os.write(to_launcher, b"u")
        read_byte(from_launcher)  # maps written, disks attached, devices cgroup joined
        os.close(to_launcher)
        os.close(from_launcher)
        sc.sethostname(cfg["hostname"])
    except BaseException as e:  # noqa: BLE001
        log(f"cannot create the computer's namespaces: {e}")
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        # Our parent is outside our pid namespace (getppid() says 0), so there is no
        # re-check here; if C is already gone, the host agent's cgroup kill ends us.
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        pid1(cfg)
    os._exit(wait_exit(pid))


def wait_exit(pid):
    """The child's exit status as a shell would give it (128 + signal when killed)."""
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def write_id_maps(pid, line):
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(line)


def main():
    cfg = json.loads(os.environ.pop("HANGAR_LAUNCH"))
    report = 3
    for procs in cfg["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    rng = uid_ranges.allocate(f"{cfg['data_dir']} {cfg['id']}")
    os.chown(cfg["run_dir"], rng.base, rng.base)
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    me = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(rng.fd)
        os.close(report)
        os.close(up_r)
        os.close(down_w)
        holder(cfg, me, rng.base, up_w, down_r)
    os.close(up_w)
    os.close(down_r)
    try:
        read_byte(up_r)
        write_id_maps(child, rng.map_line())
        # The namespaces exist: the host agent can attach the network while we build the rest.
        tell(report, {"ns_pid": child, "uid_base": rng.base})
        userns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        mntns = os.open(f"/proc/{child}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        disk_fd = mounts.attach_disks(cfg, userns, mntns)
        os.close(userns)
        os.close(mntns)
        for procs in cfg.get("devices_procs", []):
            with open(procs, "w") as f:
                f.write(str(child))
        os.write(down_w, b"g")
        os.close(down_w)
        os.close(up_r)
    except BaseException as e:  # noqa: BLE001
        log(f"cannot prepare the computer: {e}")
        os.kill(child, signal.SIGKILL)
        os._exit(1)
    tell(report, {"disk_fd": disk_fd})
    try:
        os.close(report)
    except OSError:
        pass
    os._exit(wait_exit(child))


def tell(fd, message):
    """One JSON line to the host agent; if it went away, the computer runs on without it hearing."""
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass
