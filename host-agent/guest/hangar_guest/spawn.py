"""Long-lived processes the host streams: ops spawn, attach, detach, ack, stdin,
close_stdin, resize, signal, list and forget. A process outlives the connection
that started it; its output rings let a later connection re-attach from an offset."""

import os
import signal
import struct
import subprocess
import time
from collections import deque

from .common import GuestError
from .processes import EOF_GRACE_S, KILL_GRACE_S, READ_CHUNK, SETSID, Ring, exit_status, kill_group, set_nonblocking

DEFAULT_RING = 1 << 20
# Unacknowledged stdin a single process may hold before the guest refuses more.
STDIN_LIMIT = 4 << 20
MAX_EXITED = 256


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
        # Bytes of each stream sent at most; the rest is read (the process never blocks on it) and dropped.
        self.output_limit = req.get("output_limit")
        self.truncated = False
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
                [*SETSID, "-c", *argv], req.get("user"), req.get("cwd"), env,
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
        if self.output_limit is not None and offset + len(data) > self.output_limit:
            self.truncated = True
            data = data[:max(0, self.output_limit - offset)]
            if not data:
                return
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
        if self.output_limit is not None:
            self.exit["truncated"] = self.truncated
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



def find_proc(guest, req):
    proc = guest.procs.get(req["proc"])
    if proc is None:
        raise GuestError("NOT_FOUND", f"no process {req['proc']!r}")
    return proc


def handle_spawn(guest, conn, req_id, req, payload):
    proc_id = req["proc"]
    if not isinstance(proc_id, str) or not proc_id or len(proc_id) > 32:
        raise GuestError("BAD_REQUEST", "proc must be a short string")
    if proc_id in guest.procs:
        raise GuestError("BAD_REQUEST", f"process {proc_id!r} exists")
    proc = Proc(guest, proc_id, req)
    guest.procs[proc_id] = proc
    guest.subscribe(conn, proc)
    conn.reply(req_id, {"proc": proc_id, "pid": proc.popen.pid})


def handle_stdin(guest, conn, req_id, req, payload):
    find_proc(guest, req).write_stdin(payload, req_id, conn, req.get("offset"))


def handle_close_stdin(guest, conn, req_id, req, payload):
    find_proc(guest, req).close_stdin()
    conn.reply(req_id, {})


def handle_resize(guest, conn, req_id, req, payload):
    find_proc(guest, req).resize(int(req["rows"]), int(req["cols"]))
    conn.reply(req_id, {})


def handle_signal(guest, conn, req_id, req, payload):
    find_proc(guest, req).signal(int(req["signal"]), bool(req.get("group")))
    conn.reply(req_id, {})


def handle_list(guest, conn, req_id, req, payload):
    conn.reply(req_id, {"procs": [p.info() for p in guest.procs.values()]})


def handle_attach(guest, conn, req_id, req, payload):
    proc = find_proc(guest, req)
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
        guest.subscribe(conn, proc)


def handle_ack(guest, conn, req_id, req, payload):
    find_proc(guest, req).ack(req.get("offsets") or {})
    conn.reply(req_id, {})


def handle_detach(guest, conn, req_id, req, payload):
    proc = find_proc(guest, req)
    proc.subscribers.discard(conn)
    conn.attached.discard(proc)
    guest.update_pauses()
    conn.reply(req_id, {})


def handle_forget(guest, conn, req_id, req, payload):
    proc = find_proc(guest, req)
    if proc.exit is None:
        raise GuestError("BAD_REQUEST", "process is still running")
    guest.procs.pop(proc.id, None)
    conn.reply(req_id, {})


HANDLERS = {
    "spawn": handle_spawn,
    "stdin": handle_stdin,
    "close_stdin": handle_close_stdin,
    "resize": handle_resize,
    "signal": handle_signal,
    "list": handle_list,
    "attach": handle_attach,
    "ack": handle_ack,
    "detach": handle_detach,
    "forget": handle_forget,
}
