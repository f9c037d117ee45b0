#!/usr/bin/env python3
"""Hangar guest agent: the daemon inside each computer that the host agent talks to.

It is the computer's first process (pid 1 of its pid namespace): when it dies,
the computer is down. It runs commands as `user`, streams output, and keeps
spawned processes alive across host reconnects.

Wire format (schema/guest.ts is the contract): frames of
    u32 BE header_len | u32 BE payload_len | JSON header | raw payload
over one byte stream, so the same code can serve a unix socket now and a
virtio-serial port in a VM later. Python 3.9+ stdlib only.
"""

import asyncio
import grp
import json
import os
import pwd
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections import deque

GUEST_VERSION = "1.0.0"
PROTOCOL = {"major": 1, "minor": 0}
PREFIX = struct.Struct(">II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 16 << 20
READ_CHUNK = 64 * 1024
# After the main process exits, background children may still hold the output
# pipe; wait this long for EOF, then answer with what we have (so starting a
# server with `cmd &` does not block the exec until it exits).
EOF_GRACE_S = 0.1
KILL_GRACE_S = 2.0
DEFAULT_RING = 1 << 20
# Unacknowledged stdin a single process may hold before the guest refuses more.
STDIN_LIMIT = 4 << 20
MAX_EXITED = 256
# The kernel prefers these when the computer runs out of memory, sparing the
# guest (lowering the guest itself needs CAP_SYS_RESOURCE, which it lacks).
CHILD_OOM_SCORE_ADJ = b"300"

USER_NAME = "user"
# Chosen by the host per boot and checked in our hello: the host reaches us through a
# path root inside the computer could redirect (to another computer's guest), so the
# host must be able to tell that it talks to this computer's guest.
BOOT_ID = os.environ.pop("HANGAR_BOOT_ID", "") or uuid.uuid4().hex
STARTED = time.monotonic()


def log(*parts):
    print("hangar-guest:", *parts, file=sys.stderr, flush=True)


class GuestError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------- identity


class Identity:
    """Uid, groups and base environment of `user` and root, re-read when /etc/group changes."""

    def __init__(self):
        self._group_mtime = None
        self._user = None

    def resolve(self, who):
        if who == "root":
            return {
                "uid": 0, "gid": 0, "groups": [], "home": "/root",
                "env": {
                    "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
                },
            }
        try:
            mtime = os.stat("/etc/group").st_mtime_ns
        except OSError:
            mtime = None
        if self._user is None or mtime != self._group_mtime:
            self._group_mtime = mtime
            self._user = self._load_user()
        return self._user

    @staticmethod
    def _load_user():
        try:
            pw = pwd.getpwnam(USER_NAME)
            uid, gid, home = pw.pw_uid, pw.pw_gid, pw.pw_dir
        except KeyError:
            uid, gid, home = 1000, 1000, "/home/user"
        groups = sorted({g.gr_gid for g in grp.getgrall() if USER_NAME in g.gr_mem} - {gid})
        return {
            "uid": uid, "gid": gid, "groups": groups, "home": home,
            "env": {
                "HOME": home, "USER": USER_NAME, "LOGNAME": USER_NAME, "SHELL": "/bin/bash",
                "PATH": f"{home}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
            },
        }


# ------------------------------------------------------------------ helpers


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

    def read_from(self, offset):
        """Chunks from max(offset, start) to the end, as (offset, bytes) pairs."""
        pos = self.start
        for chunk in self.chunks:
            stop = pos + len(chunk)
            if stop > offset:
                skip = max(0, offset - pos)
                yield pos + skip, chunk[skip:]
            pos = stop


# ---------------------------------------------------------------- processes


class Reaper:
    """Reaps every child (and, as pid 1, every orphan) on SIGCHLD and routes exits by pid."""

    def __init__(self, loop):
        self.waiters = {}
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
            entry = self.waiters.pop(pid, None)
            if entry is None:
                continue  # an orphan re-parented to us
            popen, callback = entry
            # Popen must not waitpid() this pid later: it could be reused by a new child.
            popen.returncode = os.waitstatus_to_exitcode(status)
            callback(status)


class Runner:
    """Starts processes as `user` or root with the computer's environment."""

    def __init__(self, reaper):
        self.reaper = reaper
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
        if ident["uid"] != 0:
            # Switch user with setpriv rather than Popen(user=...): CPython (3.11) gives up
            # vfork() for a full fork() of this process when asked to set uids, which costs
            # more than the extra exec (about 1 ms vs 0.3 ms per command under load).
            groups = ",".join(str(g) for g in ident["groups"])
            argv = [
                "/usr/bin/setpriv", f"--reuid={ident['uid']}", f"--regid={ident['gid']}",
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


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class StdinFeeder:
    """Writes a byte string into a pipe as it drains, then closes it (EPIPE just ends it)."""

    def __init__(self, loop, fd, data):
        self.loop = loop
        self.fd = fd
        self.data = memoryview(data)
        set_nonblocking(fd)
        loop.add_writer(fd, self.on_writable)

    def on_writable(self):
        try:
            n = os.write(self.fd, self.data[:READ_CHUNK])
            self.data = self.data[n:]
        except BlockingIOError:
            return
        except OSError:
            self.data = self.data[:0]
        if not self.data:
            self.loop.remove_writer(self.fd)
            os.close(self.fd)


class ExecRun:
    """One exec: combined output into one pipe, to completion, with timeout and truncation."""

    def __init__(self, loop, runner, req, done, payload=b""):
        self.loop = loop
        self.done = done
        # A reply frame cannot carry more than MAX_PAYLOAD.
        self.max_bytes = min(int(req["max_output_bytes"]), MAX_PAYLOAD)
        self.chunks = []
        self.size = 0
        self.truncated = False
        self.timed_out = False
        self.status = None
        self.eof = False
        self.finished = False
        self.t0 = time.monotonic()
        r, w = os.pipe()
        # With `stdin`, the request's payload is fed to the command, then its stdin is closed.
        in_r = in_w = None
        if req.get("stdin"):
            in_r, in_w = os.pipe()
        try:
            self.proc = runner.popen(
                ["/bin/bash", "-c", req["command"]], req.get("user"), req.get("cwd"), req.get("env"),
                stdin=in_r if in_r is not None else subprocess.DEVNULL, stdout=w, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except BaseException:
            for fd in (r, w, in_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise
        os.close(w)
        if in_r is not None:
            os.close(in_r)
            self.feed = StdinFeeder(loop, in_w, payload)
        self.fd = r
        set_nonblocking(r)
        loop.add_reader(r, self.on_readable)
        self.timer = loop.call_later(req["timeout_s"], self.on_timeout)
        self.kill_timer = None
        self.grace_timer = None
        runner.reaper.watch(self.proc, self.on_exit)

    def on_readable(self):
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_pipe()
            if self.status is not None:
                self.finish()
            return
        room = self.max_bytes - self.size
        if room <= 0:
            self.truncated = True  # keep draining so the process is never blocked on a full pipe
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self.chunks.append(data)
        self.size += len(data)

    def close_pipe(self):
        if not self.eof:
            self.eof = True
            self.loop.remove_reader(self.fd)
            os.close(self.fd)

    def on_timeout(self):
        self.timed_out = True
        kill_group(self.proc.pid, signal.SIGTERM)
        # The SIGKILL stays armed after we answer: a background child that ignores SIGTERM still dies.
        self.kill_timer = self.loop.call_later(KILL_GRACE_S, kill_group, self.proc.pid, signal.SIGKILL)

    def on_exit(self, status):
        self.status = status
        self.timer.cancel()
        if self.eof:
            self.finish()
        else:
            self.grace_timer = self.loop.call_later(EOF_GRACE_S, self.finish)

    def finish(self):
        if self.finished:
            return
        self.finished = True
        if self.grace_timer:
            self.grace_timer.cancel()
        if not self.eof:
            # Take what is already in the pipe, then let go of it.
            while True:
                try:
                    data = os.read(self.fd, READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self.on_readable_data(data)
            self.close_pipe()
        code, sig = exit_status(self.status)
        if self.timed_out:
            code = 124
        result = {
            "exit_code": code, "signal": sig, "timed_out": self.timed_out, "truncated": self.truncated,
            "duration_ms": round((time.monotonic() - self.t0) * 1000, 3),
        }
        self.done(result, b"".join(self.chunks))

    def on_readable_data(self, data):
        room = self.max_bytes - self.size
        if len(data) > room:
            data = data[:max(room, 0)]
            self.truncated = True
        if data:
            self.chunks.append(data)
            self.size += len(data)


class Proc:
    """A spawned process: streamed output with rings for re-attach, stdin with acknowledgements.

    Output flow control, two layers: while a subscriber's socket is congested
    no pipe is read (the process blocks on a full pipe); and with a `window`,
    a stream is not read further while the host has acknowledged (op `ack`)
    less than `window` bytes behind what was sent. Neither applies while no one
    is subscribed: then output goes to the ring only and the process runs on.
    """

    def __init__(self, guest, proc_id, req):
        self.guest = guest
        self.loop = guest.loop
        self.id = proc_id
        self.subscribers = set()
        self.exit = None
        self.status = None
        self.timed_out = False
        self.transport_paused = False
        self.window = req.get("window")
        self.reading = set()
        self.t0 = time.monotonic()
        ring = req.get("ring_bytes") or DEFAULT_RING
        if req.get("argv") is None and req.get("command") is None:
            raise GuestError("BAD_REQUEST", "spawn needs command or argv")
        argv = req.get("argv") or [req.get("shell") or "/bin/bash", "-c", req["command"]]
        self.argv = argv
        self.pty = req.get("pty") is not None
        self.stdin_queue = deque()  # [memoryview, request id, connection]
        self.stdin_pending = 0
        # Stdin bytes taken over the process's life: a resent write (the host's link dropped
        # before it saw our answer) says where it starts, and what we already took is skipped.
        self.stdin_taken = 0
        self.stdin_close_requested = False
        env = dict(req.get("env") or {})
        self.outputs = {}  # fd -> stream name
        if self.pty:
            self._start_pty(argv, req, env)
        else:
            self._start_pipes(argv, req, env)
        self.rings = {name: Ring(ring) for name in self.outputs.values()}
        self.acked = {name: 0 for name in self.rings}
        for fd in self.outputs:
            set_nonblocking(fd)
        self.update_readers()
        if self.stdin_fd is not None:
            set_nonblocking(self.stdin_fd)
        self.timer = None
        if req.get("timeout_s"):
            self.timer = self.loop.call_later(req["timeout_s"], self.on_timeout)
        guest.reaper.watch(self.popen, self.on_exit)

    def _start_pty(self, argv, req, env):
        import fcntl
        import pty
        import termios
        master, slave = pty.openpty()
        size = req["pty"]
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size["rows"], size["cols"], 0, 0))
        env.setdefault("TERM", "xterm-256color")
        try:
            # `setsid -c` makes the terminal the controlling tty of a new session
            # (job control works) without a preexec_fn.
            self.popen = self.guest.runner.popen(
                ["setsid", "-c", *argv], req.get("user"), req.get("cwd"), env,
                stdin=slave, stdout=slave, stderr=slave,
            )
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        os.close(slave)
        self.master = master
        self.stdin_fd = master
        self.outputs = {master: "pty"}

    def _start_pipes(self, argv, req, env):
        # Without stdin the process reads /dev/null (EOF at once) instead of waiting for input.
        in_r, in_w = os.pipe() if req.get("stdin", True) else (None, None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.popen = self.guest.runner.popen(
                argv, req.get("user"), req.get("cwd"), env,
                stdin=subprocess.DEVNULL if in_r is None else in_r, stdout=out_w, stderr=err_w, start_new_session=True,
            )
        except BaseException:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                if fd is not None:
                    os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            if fd is not None:
                os.close(fd)
        self.master = None
        self.stdin_fd = in_w
        self.outputs = {out_r: "stdout", err_r: "stderr"}

    # -- output

    def on_readable(self, fd):
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO on a pty master once the terminal has no more writers
        if not data:
            self._close_output(fd)
            return
        # A PTY master gives a few KiB per read however much is waiting: gather what is already
        # there into one event (never waiting for more), or a fast writer costs an event per 4 KiB.
        while len(data) < READ_CHUNK:
            try:
                more = os.read(fd, READ_CHUNK - len(data))
            except OSError:
                break  # nothing more now (EAGAIN), or the end, which the next read reports
            if not more:
                break
            data += more
        stream = self.outputs[fd]
        ring = self.rings[stream]
        offset = ring.end
        ring.append(data)
        for conn in list(self.subscribers):
            conn.send_event({"ev": "output", "proc": self.id, "stream": stream, "offset": offset}, data)
        if self.window and self._window_full(stream):
            self.update_readers()

    def _close_output(self, fd):
        if fd in self.reading:
            self.loop.remove_reader(fd)
            self.reading.discard(fd)
        del self.outputs[fd]
        if fd != self.stdin_fd:
            os.close(fd)
        if not self.outputs:
            self._maybe_finish()

    def set_paused(self, paused):
        """Stops reading output while a subscriber's socket cannot take more (the process then blocks)."""
        self.transport_paused = paused
        self.update_readers()

    def ack(self, offsets):
        """The host has taken output up to these offsets: more may be sent within the window."""
        for stream, offset in offsets.items():
            if stream in self.acked:
                self.acked[stream] = max(self.acked[stream], min(int(offset), self.rings[stream].end))
        self.update_readers()

    def _window_full(self, stream):
        return bool(self.window) and bool(self.subscribers) and self.rings[stream].end - self.acked[stream] >= self.window

    def update_readers(self):
        for fd, stream in self.outputs.items():
            want = not self.transport_paused and not self._window_full(stream)
            if want and fd not in self.reading:
                self.loop.add_reader(fd, self.on_readable, fd)
                self.reading.add(fd)
            elif not want and fd in self.reading:
                self.loop.remove_reader(fd)
                self.reading.discard(fd)

    # -- stdin

    def write_stdin(self, data, req_id, conn, offset=None):
        if self.stdin_fd is None or self.stdin_close_requested:
            raise GuestError("BAD_REQUEST", "stdin is closed")
        if offset is not None:
            offset = int(offset)
            if offset > self.stdin_taken:
                raise GuestError("BAD_REQUEST", f"stdin from offset {offset}, but only {self.stdin_taken} bytes came before it")
            data = data[self.stdin_taken - offset:]
        if self.stdin_pending + len(data) > STDIN_LIMIT:
            raise GuestError("BUSY", "too much unacknowledged stdin; wait for acknowledgements")
        if not data:
            conn.reply(req_id, {"written": 0})
            return
        if not self.stdin_queue:
            self.loop.add_writer(self.stdin_fd, self.on_writable)
        self.stdin_queue.append([memoryview(data), req_id, conn, len(data)])
        self.stdin_pending += len(data)
        self.stdin_taken += len(data)

    def on_writable(self):
        while self.stdin_queue:
            entry = self.stdin_queue[0]
            try:
                n = os.write(self.stdin_fd, entry[0])
            except BlockingIOError:
                return
            except OSError as e:
                self._fail_stdin(f"stdin write failed: {e.strerror}")
                return
            entry[0] = entry[0][n:]
            self.stdin_pending -= n
            if len(entry[0]):
                return
            self.stdin_queue.popleft()
            entry[2].reply(entry[1], {"written": entry[3]})
        self.loop.remove_writer(self.stdin_fd)
        if self.stdin_close_requested:
            self._close_stdin_now()

    def _fail_stdin(self, message):
        self.loop.remove_writer(self.stdin_fd)
        while self.stdin_queue:
            _, req_id, conn, _ = self.stdin_queue.popleft()
            conn.reply_error(req_id, "FAILED", message)
        self.stdin_pending = 0

    def close_stdin(self):
        if self.stdin_fd is None:
            return
        self.stdin_close_requested = True
        if not self.stdin_queue:
            self._close_stdin_now()

    def _close_stdin_now(self):
        if self.pty:
            # A terminal has no separate stdin to close: send the EOF character.
            try:
                os.write(self.master, b"\x04")
            except OSError:
                pass
            self.stdin_close_requested = False
            return
        os.close(self.stdin_fd)
        self.stdin_fd = None

    # -- control

    def resize(self, rows, cols):
        if not self.pty:
            raise GuestError("BAD_REQUEST", "process has no terminal")
        import fcntl
        import termios
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def signal(self, sig, group):
        if self.status is not None:
            return
        try:
            if group:
                os.killpg(self.popen.pid, sig)
            else:
                os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def on_timeout(self):
        self.timed_out = True
        kill_group(self.popen.pid, signal.SIGTERM)
        self.loop.call_later(KILL_GRACE_S, kill_group, self.popen.pid, signal.SIGKILL)

    def on_exit(self, status):
        self.status = status
        if self.timer:
            self.timer.cancel()
        if self.outputs:
            self.loop.call_later(EOF_GRACE_S, self._finish)
        else:
            self._finish()

    def _maybe_finish(self):
        if self.status is not None:
            self._finish()

    def _finish(self):
        if self.exit is not None:
            return
        for fd in list(self.outputs):
            # Drain what is already buffered, then stop listening.
            while fd in self.outputs:
                self.on_readable(fd)
                if fd in self.outputs and not self._readable_now(fd):
                    self._close_output(fd)
        if self.stdin_fd is not None:
            self.loop.remove_writer(self.stdin_fd)
            if self.stdin_queue:
                self._fail_stdin("process exited")
            if not self.pty:
                os.close(self.stdin_fd)
            self.stdin_fd = None
        if self.master is not None:
            os.close(self.master)
            self.master = None
        code, sig = exit_status(self.status)
        if self.timed_out:
            code = 124
        self.exit = {
            "exit_code": code, "signal": sig, "timed_out": self.timed_out,
            "duration_ms": round((time.monotonic() - self.t0) * 1000, 3),
        }
        for conn in list(self.subscribers):
            conn.send_event({"ev": "exit", "proc": self.id, **self.exit})
        self.guest.on_proc_exit(self)

    @staticmethod
    def _readable_now(fd):
        import select
        r, _, _ = select.select([fd], [], [], 0)
        return bool(r)

    def info(self):
        return {
            "proc": self.id, "pid": self.popen.pid, "argv": self.argv, "pty": self.pty,
            "streams": {name: {"start": r.start, "end": r.end} for name, r in self.rings.items()},
            "exit": self.exit,
        }


# --------------------------------------------------------------- connection


class Connection(asyncio.Protocol):
    """One host connection: frame parsing, request dispatch, event delivery with backpressure."""

    def __init__(self, guest):
        self.guest = guest
        self.buf = bytearray()
        self.transport = None
        self.paused = False
        self.attached = set()

    def connection_made(self, transport):
        self.transport = transport
        self.guest.connections.add(self)
        self.send({"t": "hello", "protocol": PROTOCOL, "guest_version": GUEST_VERSION, "boot_id": BOOT_ID})

    def connection_lost(self, exc):
        self.guest.connections.discard(self)
        for proc in list(self.attached):
            proc.subscribers.discard(self)
        self.paused = False
        self.guest.update_pauses()
        self.attached.clear()

    def pause_writing(self):
        self.paused = True
        self.guest.update_pauses()

    def resume_writing(self):
        self.paused = False
        self.guest.update_pauses()

    def data_received(self, data):
        self.buf += data
        pos = 0
        # Parse every complete frame, then drop the consumed bytes once (not once per frame).
        while len(self.buf) - pos >= 8:
            hlen, plen = PREFIX.unpack_from(self.buf, pos)
            if hlen > MAX_HEADER or plen > MAX_PAYLOAD:
                log("frame too large; dropping connection")
                self.transport.close()
                return
            end = pos + 8 + hlen + plen
            if len(self.buf) < end:
                break
            header = bytes(self.buf[pos + 8:pos + 8 + hlen])
            payload = bytes(self.buf[pos + 8 + hlen:end])
            pos = end
            self.on_frame(header, payload)
            if self.transport.is_closing():
                return
        if pos:
            del self.buf[:pos]

    def on_frame(self, header_bytes, payload):
        try:
            header = json.loads(header_bytes)
            req_id = header["id"]
            op = header["op"]
        except (ValueError, KeyError, TypeError):
            log("malformed frame header; dropping connection")
            self.transport.close()
            return
        try:
            self.guest.handle(self, req_id, op, header, payload)
        except GuestError as e:
            self.reply_error(req_id, e.code, str(e))
        except (KeyError, TypeError, ValueError) as e:
            self.reply_error(req_id, "BAD_REQUEST", f"bad {op} request: {e!r}")
        except OSError as e:
            self.reply_error(req_id, "FAILED", f"{op} failed: {e}")

    def send(self, header, payload=b""):
        if self.transport is None or self.transport.is_closing():
            return
        h = json.dumps(header, separators=(",", ":")).encode()
        if payload:
            self.transport.writelines([PREFIX.pack(len(h), len(payload)), h, payload])
        else:
            self.transport.write(PREFIX.pack(len(h), 0) + h)

    def reply(self, req_id, data, payload=b""):
        self.send({"t": "res", "id": req_id, "ok": True, "data": data}, payload)

    def reply_error(self, req_id, code, message):
        self.send({"t": "res", "id": req_id, "ok": False, "error": {"code": code, "message": message}})

    def send_event(self, header, payload=b""):
        header["t"] = "evt"
        self.send(header, payload)


# -------------------------------------------------------------------- guest


class Guest:
    def __init__(self, loop):
        self.loop = loop
        self.reaper = Reaper(loop)
        self.runner = Runner(self.reaper)
        self.connections = set()
        self.procs = {}
        self.exited = deque()

    def handle(self, conn, req_id, op, req, payload):
        if op == "ping":
            conn.reply(req_id, {"uptime_s": round(time.monotonic() - STARTED, 3)})
        elif op == "setenv":
            env = req["env"]
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise GuestError("BAD_REQUEST", "env must map names to strings")
            self.runner.computer_env = dict(env)
            conn.reply(req_id, {})
        elif op == "exec":
            ExecRun(self.loop, self.runner, req, lambda result, output: conn.reply(req_id, result, output), payload)
        elif op == "spawn":
            proc_id = req["proc"]
            if not isinstance(proc_id, str) or not proc_id or len(proc_id) > 32:
                raise GuestError("BAD_REQUEST", "proc must be a short string")
            if proc_id in self.procs:
                raise GuestError("BAD_REQUEST", f"process {proc_id!r} exists")
            proc = Proc(self, proc_id, req)
            self.procs[proc_id] = proc
            self.subscribe(conn, proc)
            conn.reply(req_id, {"proc": proc_id, "pid": proc.popen.pid})
        elif op == "stdin":
            self.proc(req).write_stdin(payload, req_id, conn, req.get("offset"))
        elif op == "close_stdin":
            self.proc(req).close_stdin()
            conn.reply(req_id, {})
        elif op == "resize":
            self.proc(req).resize(int(req["rows"]), int(req["cols"]))
            conn.reply(req_id, {})
        elif op == "signal":
            self.proc(req).signal(int(req["signal"]), bool(req.get("group")))
            conn.reply(req_id, {})
        elif op == "list":
            conn.reply(req_id, {"procs": [p.info() for p in self.procs.values()]})
        elif op == "attach":
            proc = self.proc(req)
            offsets = req.get("offsets") or {}
            if req.get("window") is not None:
                proc.window = req["window"]
            # What the host already has counts as acknowledged.
            for stream in proc.acked:
                proc.acked[stream] = min(int(offsets.get(stream, 0)), proc.rings[stream].end)
            conn.reply(req_id, proc.info())
            # Replay then subscribe within one loop turn: no byte can slip between.
            for stream, ring in proc.rings.items():
                for offset, chunk in ring.read_from(int(offsets.get(stream, 0))):
                    conn.send_event({"ev": "output", "proc": proc.id, "stream": stream, "offset": offset}, chunk)
            if proc.exit is not None:
                conn.send_event({"ev": "exit", "proc": proc.id, **proc.exit})
            else:
                self.subscribe(conn, proc)
        elif op == "ack":
            self.proc(req).ack(req.get("offsets") or {})
            conn.reply(req_id, {})
        elif op == "detach":
            proc = self.proc(req)
            proc.subscribers.discard(conn)
            conn.attached.discard(proc)
            self.update_pauses()
            conn.reply(req_id, {})
        elif op == "forget":
            proc = self.proc(req)
            if proc.exit is None:
                raise GuestError("BAD_REQUEST", "process is still running")
            self.procs.pop(proc.id, None)
            conn.reply(req_id, {})
        else:
            raise GuestError("BAD_REQUEST", f"unknown op {op!r}")

    def proc(self, req):
        proc = self.procs.get(req["proc"])
        if proc is None:
            raise GuestError("NOT_FOUND", f"no process {req['proc']!r}")
        return proc

    def subscribe(self, conn, proc):
        proc.subscribers.add(conn)
        conn.attached.add(proc)
        self.update_pauses()

    def update_pauses(self):
        for proc in self.procs.values():
            if proc.exit is None:
                proc.set_paused(any(c.paused for c in proc.subscribers))

    def on_proc_exit(self, proc):
        self.exited.append(proc.id)
        while len(self.exited) > MAX_EXITED:
            self.procs.pop(self.exited.popleft(), None)


async def serve(path):
    loop = asyncio.get_running_loop()
    guest = Guest(loop)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # only root may talk to the guest: it runs commands as root
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    server = await loop.create_unix_server(lambda: Connection(guest), sock=sock, backlog=64)
    log(f"listening on {path} (boot {BOOT_ID})")
    async with server:
        await stop


def main():
    path = "/run/hangar/guest.sock"
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--listen":
        path = args[1]
    elif args:
        print("usage: hangar-guest.py [--listen /path/to/guest.sock]", file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(path))


if __name__ == "__main__":
    main()
