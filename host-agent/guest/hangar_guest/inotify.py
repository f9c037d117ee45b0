"""Linux inotify through libc (the standard library has no binding): a recursive
watch of directory trees that reports created, modified and deleted paths."""

import ctypes
import errno
import os
import struct

IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
EVENT = struct.Struct("iIII")

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.inotify_init1
except (OSError, AttributeError):
    _libc = None


class Unavailable(Exception):
    """Why file events cannot be had here."""


class TreeWatch:
    """inotify on directory trees: `events()` parses what the kernel reported into (kind, path, is_dir) tuples.

    New directories are watched as they appear, and what they already hold is
    reported as created (it appeared before their watch did). At most
    `max_dirs` directories are watched; `capped` says when more were skipped.
    """

    def __init__(self, roots, max_dirs):
        if _libc is None:
            raise Unavailable("this computer's C library has no inotify")
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise Unavailable(f"inotify: {os.strerror(ctypes.get_errno())}")
        self.max_dirs = max_dirs
        self.dirs = {}  # wd -> directory path
        self.capped = False
        self.missing = []
        self.roots = set(roots)
        for root in roots:
            if os.path.isdir(root):
                self._add_tree(root, report=None)
            else:
                self.missing.append(root)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _add(self, path):
        if len(self.dirs) >= self.max_dirs:
            self.capped = True
            return False
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                self.capped = True  # the user's inotify watches are used up
            return False
        self.dirs[wd] = path
        return True

    def _add_tree(self, top, report):
        """Watches `top` and every directory under it; `report(kind, path, is_dir)` hears of what is inside (None: silent)."""
        stack = [top]
        while stack:
            d = stack.pop()
            if not self._add(d):
                continue
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if report is not None:
                    report("created", e.path, is_dir)
                if is_dir:
                    stack.append(e.path)

    def events(self):
        """Reads what is waiting; returns [(kind, path, is_dir)] with kind created/modified/deleted/overflow."""
        out = []
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return out
        pos = 0
        while pos + EVENT.size <= len(data):
            wd, mask, _cookie, length = EVENT.unpack_from(data, pos)
            name = data[pos + EVENT.size:pos + EVENT.size + length].rstrip(b"\0")
            pos += EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                out.append(("overflow", "", False))
                continue
            base = self.dirs.get(wd)
            if mask & IN_IGNORED:
                self.dirs.pop(wd, None)
                continue
            if base is None:
                continue
            path = os.path.join(base, os.fsdecode(name)) if name else base
            is_dir = bool(mask & IN_ISDIR)
            if mask & (IN_CREATE | IN_MOVED_TO):
                out.append(("created", path, is_dir))
                if is_dir:
                    self._add_tree(path, report=lambda k, p, d: out.append((k, p, d)))
            elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
                out.append(("modified", path, False))
            elif mask & (IN_DELETE | IN_MOVED_FROM):
                out.append(("deleted", path, is_dir))
            elif mask & (IN_DELETE_SELF | IN_MOVE_SELF) and base in self.roots:
                # A watched root itself went away (directories below it are reported by their parent).
                out.append(("deleted", base, True))
        return out
