"""File work as `user` (or root) off the event loop.

The guest is root; file operations the API asks for are done as `user`, so what
they create belongs to `user` and what `user` may not touch is refused. Each
runs in a worker thread that takes the identity for itself only: the
filesystem uid and gid (setfsuid/setfsgid, per thread on Linux) and the
supplementary groups (the raw setgroups system call is per thread too; libc's
wrapper would change every thread). The loop and the other threads stay root.
"""

import ctypes
import os
import platform
from concurrent.futures import ThreadPoolExecutor

from .common import log

# setgroups(2) numbers of the raw system call, per architecture.
_SETGROUPS = {"x86_64": 116, "aarch64": 159, "arm64": 159}.get(platform.machine())
WORKERS = 4

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # no libc to call: file work runs as root (logged once)
    _libc = None


def take_identity(ident):
    """Makes the calling thread act on files as `ident` (uid, gid, groups)."""
    if _libc is None:
        return False
    groups = ident["groups"]
    if _SETGROUPS is not None:
        arr = (ctypes.c_uint * max(1, len(groups)))(*groups)
        if _libc.syscall(_SETGROUPS, len(groups), arr) != 0:
            return False
    _libc.setfsgid(ident["gid"])
    _libc.setfsuid(ident["uid"])
    # setfsuid reports nothing; asking with an invalid id answers the current one.
    return _libc.setfsuid(-1) == ident["uid"]


class FileWorkers:
    """Threads for file work; `submit(who, fn, *args)` runs fn as `who` and returns an asyncio future."""

    def __init__(self, loop, identity):
        self.loop = loop
        self.identity = identity
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="files")
        self.warned = False

    def submit(self, who, fn, *args):
        ident = self.identity.resolve(who)
        return self.loop.run_in_executor(self.pool, self._run, ident, fn, args)

    def _run(self, ident, fn, args):
        if not take_identity(ident) and not self.warned:
            self.warned = True
            log("cannot take another identity for file work; it runs as root")
        try:
            return fn(*args)
        finally:
            take_identity({"uid": 0, "gid": 0, "groups": []})
