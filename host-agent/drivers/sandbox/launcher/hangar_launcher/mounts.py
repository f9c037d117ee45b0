"""The computer's file systems.

Two halves. `attach_disks` runs in the launcher (host root) and stages in the
computer's mount namespace what its root is made of, among them two idmapped
mounts: the template root and the computer's own disk (an ext4 image,
loop-mounted), both shifted by the computer's user namespace, so files stored with owner 0 appear as that
computer's root and as nothing of the host's: a disk is independent of the
host range it ran with. `build_root` runs as the computer's pid 1, root of its
user namespace: the overlay of the two (it must be mounted inside the user
namespace, with `userxattr`, to work over idmapped layers), /proc, /sys, /dev,
/run, then pivot_root.
"""

import os
import sys

from . import syscalls as sc

# statvfs flags that a mount made in a less privileged user namespace must keep on remount.
LOCKED_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME | sc.MS_NODIRATIME | sc.MS_RELATIME


# Everything pid 1 needs from the host, gathered by the launcher (host root) on a tmpfs mounted
# over /tmp in the computer's mount namespace (private to it; the host's /tmp is untouched): the
# computer's root never has to walk host paths it could not search (a data dir may be 0700).
STAGE = "/tmp"
LOWER = f"{STAGE}/lower"
UPPER = f"{STAGE}/upper"
DISK = f"{STAGE}/disk"
ROOT = f"{STAGE}/root"
RUN = f"{STAGE}/run"
RUNTIME = f"{STAGE}/runtime"
SHARES = f"{STAGE}/share"


def attach_disks(cfg, userns_fd, mntns_fd):
    """Launcher side: stages the idmapped template and disk, the run dir, the runtime and the shares
    in the computer's mount namespace.

    Everything is taken from the host first, as detached mounts and fds (the
    stage hides the host's /tmp, where a data dir may well be), then moved in.
    Returns an fd of the disk's file system, kept open by the launcher: the host
    freezes the file system through it (fsfreeze /proc/<launcher>/fd/<n>) to copy
    a running computer's disk consistently."""
    own_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    detached = []  # (fd, stage path)

    def take(path, attrs, target, userns=0, recursive=False):
        fd = sc.open_tree_clone(path, recursive=recursive)
        detached.append((fd, target))
        sc.mount_setattr(fd, attrs, userns, recursive=recursive)

    image = os.open(cfg["disk_image"], os.O_RDWR | os.O_CLOEXEC)
    try:
        take(cfg["template"], sc.MOUNT_ATTR_IDMAP | sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NODEV, LOWER, userns_fd)
        take(cfg["run_dir"], sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC, RUN)
        take(cfg["runtime_dir"], sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV, RUNTIME)
        for i, share in enumerate(cfg.get("shares", [])):
            if not os.path.isdir(share):
                log(f"not sharing {share}: it does not exist on the host")
                continue
            take(share, sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV, f"{SHARES}/{i}", recursive=True)
        sc.setns(mntns_fd, sc.CLONE_NEWNS)
        try:
            sc.mount("tmpfs", STAGE, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755,size=64k")
            for d in (LOWER, UPPER, DISK, ROOT, RUN, RUNTIME, SHARES):
                os.mkdir(d, 0o755)
            for fd, target in detached:
                if not os.path.exists(target):
                    os.mkdir(target, 0o755)
                sc.move_mount(fd, target)
            loop, loop_fd = sc.loop_device(image, cfg["disk_image"])
            try:
                sc.mount(loop, DISK, "ext4", sc.MS_NODEV | sc.MS_NOSUID)
            finally:
                os.close(loop_fd)  # the mount holds the device now; without one, autoclear detaches it
            disk_fd = os.open(DISK, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            disk = sc.open_tree_clone(DISK)
            sc.mount_setattr(disk, sc.MOUNT_ATTR_IDMAP | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOSUID, userns_fd)
            sc.move_mount(disk, UPPER)
            os.close(disk)
            sc.umount(DISK, sc.MNT_DETACH)
        finally:
            sc.setns(own_ns, sc.CLONE_NEWNS)
    finally:
        os.close(own_ns)
        os.close(image)
        for fd, _ in detached:
            os.close(fd)
    return disk_fd


def log(message):
    print(f"hangar-init: {message}", file=sys.stderr, flush=True)


def bind(source, target, flags=0, readonly=False):
    sc.mount(source, target, None, sc.MS_BIND)
    if flags or readonly:
        keep = os.statvfs(target).f_flag & LOCKED_FLAGS
        extra = sc.MS_RDONLY if readonly else 0
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | keep | flags | extra)


def inside(root, path):
    """Whether root+path resolves within root (no symlink of the disk leads out)."""
    return os.path.realpath(root + path) == root + path


def mask_dir(path):
    sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "size=0,mode=555")


def build_root(cfg):
    """pid 1 side: the computer's root file system; on return, / is the computer's and the host's is gone."""
    R = ROOT
    for d in ("upper", "work"):
        os.makedirs(os.path.join(UPPER, d), mode=0o755, exist_ok=True)
    opts = f"userxattr,lowerdir={LOWER},upperdir={UPPER}/upper,workdir={UPPER}/work"
    # nodev: device nodes on the disk cannot be opened (nor can they be made: mknod needs host root).
    sc.mount("overlay", R, "overlay", sc.MS_NODEV, opts)

    # A previous run may have planted symlinks on the disk (e.g. /run -> /etc, or to a host path
    # while the host's root is still visible here). Nothing of the computer runs yet, so a path
    # checked here cannot change before it is used.
    for d in ("/proc", "/sys", "/dev", "/run"):
        if not inside(R, d) or not os.path.isdir(R + d):
            raise RuntimeError(f"the computer's disk is damaged: {d} is not a directory")

    sc.mount("proc", R + "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    # As in Docker: kernel tunables read-only, host-revealing files masked.
    for p in ("sys", "sysrq-trigger", "irq", "bus", "fs"):
        if os.path.exists(f"{R}/proc/{p}"):
            bind(f"{R}/proc/{p}", f"{R}/proc/{p}", readonly=True)
    for p in ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats"):
        if os.path.exists(f"{R}/proc/{p}"):
            bind("/dev/null", f"{R}/proc/{p}")
    for p in ("acpi", "scsi"):
        if os.path.isdir(f"{R}/proc/{p}"):
            mask_dir(f"{R}/proc/{p}")
    sc.mount("sysfs", R + "/sys", "sysfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    for p in ("firmware", "devices/virtual/powercap"):
        if os.path.isdir(f"{R}/sys/{p}"):
            mask_dir(f"{R}/sys/{p}")

    # /dev: only harmless devices, bound from the host's (the tmpfs itself is nodev).
    dev = R + "/dev"
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV, "mode=755,size=64k")
    for d in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{dev}/{d}", "w").close()
        bind(f"/dev/{d}", f"{dev}/{d}", flags=sc.MS_NOSUID | sc.MS_NOEXEC)
    os.mkdir(f"{dev}/pts")
    os.mkdir(f"{dev}/shm")
    sc.mount("devpts", f"{dev}/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5")
    sc.mount("tmpfs", f"{dev}/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.symlink("/proc/self/fd", f"{dev}/fd")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{dev}/{name}")

    run = R + "/run"
    sc.mount("tmpfs", run, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=755")
    os.mkdir(f"{run}/lock", 0o1777)
    os.chmod(f"{run}/lock", 0o1777)
    # The guest's control socket: this computer's own host directory, and nothing runs from it.
    os.mkdir(f"{run}/hangar", 0o700)
    bind(RUN, f"{run}/hangar", flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    # The guest's runtime (interpreter, libraries, code): read-only, nothing setuid, no devices.
    os.mkdir(f"{run}/hangar-guest", 0o755)
    bind(RUNTIME, f"{run}/hangar-guest", flags=sc.MS_NOSUID | sc.MS_NODEV, readonly=True)

    # Operator directories shared read-only at the same path (e.g. a local package mirror).
    for i, share in enumerate(cfg.get("shares", [])):
        if not os.path.isdir(f"{SHARES}/{i}"):
            continue  # the launcher said why
        if not inside(R, share):
            log(f"not sharing {share}: a symlink on the disk is in the way")
            continue
        try:
            os.makedirs(R + share, exist_ok=True)
            bind(f"{SHARES}/{i}", R + share, flags=sc.MS_NOSUID | sc.MS_NODEV, readonly=True)
        except OSError as e:
            log(f"not sharing {share}: {e}")

    os.chdir(R)
    sc.pivot_root(".", ".")
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")

    # From here on, paths resolve inside the computer: a symlink can only point within it.
    for name in ("hostname", "hosts", "resolv.conf"):
        path = f"/etc/{name}"
        try:
            if os.path.islink(path):
                os.unlink(path)
            with open(path, "w") as f:
                f.write(cfg["etc"][name])
        except OSError as e:
            log(f"cannot write {path}: {e}")
