"""Processes: starting them as `user` or root, reaping them (we are pid 1), signalling
their groups, and the output rings that let a host re-attach to what it missed."""

import json
import os
import signal
import subprocess
import sys
from collections import deque

from .common import GuestError
from .identity import Identity

READ_CHUNK = 64 * 1024
# After the main process exits, background children may still hold the output
# pipe; wait this long for EOF, then answer with what we have (so starting a
# server with `cmd &` does not block the exec until it exits).
EOF_GRACE_S = 0.1
KILL_GRACE_S = 2.0
# The kernel prefers these when the computer runs out of memory, sparing the
# guest (lowering the guest itself needs CAP_SYS_RESOURCE, which it lacks).
CHILD_OOM_SCORE_ADJ = b"300"
# Exit codes the reaper keeps for the process watch.
RECENT_EXITS = 1024


def runtime_tool(name):
    """argv prefix of a program of the guest's own runtime (so removing util-linux inside does not
    break the guest), or of the computer's when the guest runs without a runtime."""
    root = os.path.dirname(os.path.dirname(sys.executable))
    try:
        with open(os.path.join(root, "runtime.json")) as f:
            manifest = json.load(f)
        return [os.path.join(root, manifest["loader"]), "--library-path", os.path.join(root, manifest["libraryPath"]), os.path.join(root, manifest["tools"][name])]
    except (OSError, ValueError, KeyError):
        return [f"/usr/bin/{name}"]


SETPRIV = runtime_tool("setpriv")
SETSID = runtime_tool("setsid")


def exit_status(status):
    """(exit_code, signal) from a waitpid status, with the shell's 128+n for signals."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), None


def set_nonblocking(fd):
    os.set_blocking(fd, False)


def lower_oom_priority(pid):
    try:
        fd = os.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, CHILD_OOM_SCORE_ADJ)
        finally:
            os.close(fd)
    except OSError:
        pass


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Ring:
    """The most recent `capacity` bytes of a stream, addressed by absolute offset."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.chunks = deque()
        self.size = 0
        self.end = 0

    @property
    def start(self):
        return self.end - self.size

    def append(self, data):
        self.chunks.append(data)
        self.size += len(data)
        self.end += len(data)
        while self.size > self.capacity:
            head = self.chunks[0]
            excess = self.size - self.capacity
            if len(head) <= excess:
                self.chunks.popleft()
                self.size -= len(head)
            else:
                self.chunks[0] = head[excess:]
                self.size -= excess

    def read_range(self, offset, stop):
        """Chunks from max(offset, start) up to `stop`, as (offset, bytes) pairs."""
        for pos, chunk in self.read_from(offset):
            if pos >= stop:
                return
            yield pos, chunk[:stop - pos]

    def read_from(self, offset):
        """Chunks from max(offset, start) to the end, as (offset, bytes) pairs."""
        pos = self.start
        for chunk in self.chunks:
            stop = pos + len(chunk)
            if stop > offset:
                skip = max(0, offset - pos)
                yield pos + skip, chunk[skip:]
            pos = stop


class Reaper:
    """Reaps every child (and, as pid 1, every orphan) on SIGCHLD and routes exits by pid."""

    def __init__(self, loop):
        self.waiters = {}
        # Exit codes of processes reaped lately (orphans too), for process.exited events.
        self.recent_exits = {}
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def watch(self, popen, callback):
        self.waiters[popen.pid] = (popen, callback)
        self.reap()  # it may have exited before we registered

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.recent_exits[pid] = exit_status(status)[0]
            while len(self.recent_exits) > RECENT_EXITS:
                del self.recent_exits[next(iter(self.recent_exits))]
            entry = self.waiters.pop(pid, None)
            if entry is None:
                continue  # an orphan re-parented to us
            popen, callback = entry
            # Popen must not waitpid() this pid later: it could be reused by a new child.
            popen.returncode = os.waitstatus_to_exitcode(status)
            callback(status)


class Runner:
    """Starts processes as `user` or root with the computer's environment.

    How a child becomes `user` depends on what is cheaper where the guest runs.
    On the host's kernel (a sandbox), one more exec (setpriv) costs less than
    the full fork() CPython makes when Popen itself switches uids (about
    0.3 ms vs 1 ms per command under load). In a VM it is the other way
    round: under software emulation every program start is emulated, and the
    setpriv exec added about 70 ms to each command where the fork added about
    12 ms (measured in a TCG guest: `bash -c true` 98 ms through vfork as
    root, 110 ms through Popen(user=...), 184 ms through setpriv).
    """

    def __init__(self, reaper, fork_to_switch_user=False):
        self.reaper = reaper
        self.fork_to_switch_user = fork_to_switch_user
        self.identity = Identity()
        self.computer_env = {}

    def popen(self, argv, who, cwd, extra_env, **kw):
        ident = self.identity.resolve(who or "user")
        env = dict(ident["env"])
        env.update(self.computer_env)
        if extra_env:
            env.update(extra_env)
        if cwd is None:
            cwd = "/workspace" if (who or "user") == "user" and os.path.isdir("/workspace") else ident["home"]
        if ident["uid"] != 0 and self.fork_to_switch_user:
            kw = {**kw, "user": ident["uid"], "group": ident["gid"], "extra_groups": list(ident["groups"])}
        elif ident["uid"] != 0:
            groups = ",".join(str(g) for g in ident["groups"])
            argv = [
                *SETPRIV, f"--reuid={ident['uid']}", f"--regid={ident['gid']}",
                f"--groups={groups}" if groups else "--clear-groups", "--", *argv,
            ]
        try:
            p = subprocess.Popen(argv, cwd=cwd, env=env, close_fds=True, **kw)
        except FileNotFoundError as e:
            raise GuestError("BAD_REQUEST", f"no such file or directory: {e.filename}") from None
        except (PermissionError, NotADirectoryError) as e:
            raise GuestError("BAD_REQUEST", str(e)) from None
        lower_oom_priority(p.pid)
        return p
