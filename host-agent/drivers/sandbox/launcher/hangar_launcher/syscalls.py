"""The system calls the launcher needs that Python's standard library (3.9+) does not wrap."""

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

if os.uname().machine != "x86_64":
    # The numbers below and the seccomp table are x86_64's.
    raise SystemExit(f"hangar launcher: unsupported architecture {os.uname().machine} (x86_64 only)")

NR_PIVOT_ROOT = 155
NR_PRCTL = 157
NR_MOUNT = 165
NR_UMOUNT2 = 166
NR_SETHOSTNAME = 170
NR_UNSHARE = 272
NR_SETNS = 308
NR_SECCOMP = 317
NR_OPEN_TREE = 428
NR_MOVE_MOUNT = 429
NR_MOUNT_SETATTR = 442

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _check(result, what):
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(path):
    return os.fsencode(path) if path is not None else None


def syscall(nr, *args, what="syscall"):
    return _check(_libc.syscall(ctypes.c_long(nr), *args), what)


def unshare(flags):
    syscall(NR_UNSHARE, ctypes.c_int(flags), what="unshare")


def setns(fd, nstype):
    syscall(NR_SETNS, ctypes.c_int(fd), ctypes.c_int(nstype), what="setns")


def mount(source, target, fstype, flags=0, data=None):
    syscall(
        NR_MOUNT, ctypes.c_char_p(_b(source)), ctypes.c_char_p(_b(target)), ctypes.c_char_p(_b(fstype)),
        ctypes.c_ulong(flags), ctypes.c_char_p(_b(data)), what=f"mount {fstype or ''} {target}".strip(),
    )


def umount(target, flags=0):
    syscall(NR_UMOUNT2, ctypes.c_char_p(_b(target)), ctypes.c_int(flags), what=f"umount {target}")


def pivot_root(new_root, put_old):
    syscall(NR_PIVOT_ROOT, ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old)), what="pivot_root")


def sethostname(name):
    raw = name.encode()
    syscall(NR_SETHOSTNAME, ctypes.c_char_p(raw), ctypes.c_size_t(len(raw)), what="sethostname")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return syscall(
        NR_PRCTL, ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5), what=f"prctl {option}",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def open_tree_clone(path, recursive=False):
    """A detached copy of the mount (tree) at `path`, as an fd; it vanishes when closed unless moved somewhere."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return syscall(NR_OPEN_TREE, ctypes.c_int(AT_FDCWD), ctypes.c_char_p(_b(path)), ctypes.c_uint(flags), what=f"open_tree {path}")


def mount_setattr(fd, attr_set, userns_fd=0, recursive=False):
    attr = _MountAttr(attr_set, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    syscall(
        NR_MOUNT_SETATTR, ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_uint(flags), ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)), what="mount_setattr",
    )


def move_mount(fd, target):
    syscall(
        NR_MOVE_MOUNT, ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_int(AT_FDCWD), ctypes.c_char_p(_b(target)),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH), what=f"move_mount {target}",
    )


def seccomp_install(program, flags):
    """Installs a classic BPF filter (bytes of struct sock_filter) on this thread."""

    class _Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = _Fprog(len(program) // 8, program)
    SECCOMP_SET_MODE_FILTER = 1
    syscall(NR_SECCOMP, ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags), ctypes.byref(prog), what="seccomp")


LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4
_LOOP_INFO64 = "=QQQQQIIII64s64s32sQQ"  # struct loop_info64
_LOOP_CONFIG = "=II" + _LOOP_INFO64[1:] + "8Q"  # struct loop_config: fd, block_size, info, reserved


def loop_device(backing, name):
    """Attaches the open file `backing` to a free loop device (autoclear: it detaches once nothing
    holds it) and returns (path, fd). Close the fd once the device is mounted."""
    import fcntl
    import struct

    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            path = f"/dev/loop{n}"
            dev = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            label = os.fsencode(name)[-63:]
            config = struct.pack(_LOOP_CONFIG, backing, 0, 0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR, label, b"", b"", 0, 0, *([0] * 8))
            try:
                fcntl.ioctl(dev, LOOP_CONFIGURE, config)
                return path, dev
            except OSError as e:
                os.close(dev)
                if e.errno != 16:  # EBUSY: another process took it between the two calls
                    raise
        raise OSError(16, "no free loop device")
    finally:
        os.close(ctl)
