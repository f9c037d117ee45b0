"""Long-lived processes the host streams: ops spawn, attach, detach, ack, stdin,
close_stdin, resize, signal, list and forget. A process outlives the connection
that started it; its output rings let a later connection re-attach from an offset."""

import fcntl
import os
import select
import signal
import struct
import subprocess
import time
from collections import deque

from .common import GuestError
from .processes import EOF_GRACE_S, KILL_GRACE_S, READ_CHUNK, SETSID, Ring, exit_status, kill_group, set_nonblocking

DEFAULT_RING = 1 << 20
# Chunks whose place in the read order a re-attach's replay keeps (older ones replay stream by stream).
ORDER_ENTRIES = 8192
F_SETPIPE_SZ = 1031
# Reads of a stream at a process's end (a background child may write for ever).
DRAIN_READS = 256
# The smallest pipe the kernel makes: one slot, so in packet mode one write at a time.
ORDERED_PIPE_BYTES = 4096
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

    Order across stdout and stderr: two pipes keep no order between them (a
    reader that wakes after `echo a; echo b >&2; echo c` finds "a\nc\n" in one
    and "b\n" in the other). With `ordered`, each stream is a packet-mode pipe of
    one slot, so a stream holds at most one unread write and the next write to
    it waits until that one is read, and the pipes are watched edge-triggered
    in an epoll of their own, whose ready list is in the order the writes
    came; reading exactly one write per event then reads them in the order
    they were written (one writer; concurrent writers in some order they could
    have had). It costs a wakeup per write of up to 4 KiB, so only callers that
    merge the streams ask for it. Whatever the mode, the order chunks were read
    in is kept beside the rings, so a re-attach replays them in that order.
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
        self.ordered = bool(req.get("ordered")) and req.get("pty") is None
        self.epoll = None
        # Streams' fds with a write waiting to be read, in the order they were written (ordered mode).
        self.ready = deque()
        # Ordered streams whose writers have all closed (EPOLLHUP): once their last write is read, so is their end.
        self.hung_up = set()
        # (stream, offset, end) of each chunk in the order read, for replays.
        self.order = deque()
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
        out_r, out_w, err_r, err_w = self._output_pipes()
        try:
            self.popen = self.guest.runner.popen(
                argv, req.get("user"), req.get("cwd"), env,
                stdin=subprocess.DEVNULL if in_r is None else in_r, stdout=out_w, stderr=err_w, start_new_session=True,
            )
        except BaseException:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                if fd is not None:
                    os.close(fd)
            if self.epoll is not None:
                self.epoll.close()
            raise
        for fd in (in_r, out_w, err_w):
            if fd is not None:
                os.close(fd)
        self.master = None
        self.stdin_fd = in_w
        self.outputs = {out_r: "stdout", err_r: "stderr"}
        if self.epoll is not None:
            self.loop.add_reader(self.epoll.fileno(), self.on_ordered_events)

    def _output_pipes(self):
        """stdout's and stderr's pipes (read, write, read, write): one-slot packet pipes when ordered."""
        if self.ordered:
            made = []
            try:
                for _ in range(2):
                    r, w = os.pipe2(os.O_DIRECT)
                    made += [r, w]
                    fcntl.fcntl(w, F_SETPIPE_SZ, ORDERED_PIPE_BYTES)
                # Watched before the process exists: what it writes at once is queued in its order too.
                self.epoll = select.epoll()
                self.epoll.register(made[0], select.EPOLLIN | select.EPOLLET)
                self.epoll.register(made[2], select.EPOLLIN | select.EPOLLET)
                return made
            except OSError:
                # A kernel without packet pipes: plain pipes, order as the reader happens to see it.
                for fd in made:
                    os.close(fd)
                if self.epoll is not None:
                    self.epoll.close()
                    self.epoll = None
                self.ordered = False
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        return [out_r, out_w, err_r, err_w]

    # -- output

    def on_ordered_events(self, drain=False):
        """The epoll saw writes: queue their streams in write order, then read what may be read."""
        if self.epoll is None:
            return
        for fd, events in self.epoll.poll(0):
            self.ready.append(fd)
            if events & select.EPOLLHUP:
                self.hung_up.add(fd)
        self._read_ready(drain)

    def _read_ready(self, drain=False):
        # One write per event, in order; a stream that may not be read now holds back the ones behind it.
        while self.ready:
            fd = self.ready[0]
            if fd not in self.outputs:
                self.ready.popleft()
                continue
            if not drain and (self.transport_paused or self._window_full(self.outputs[fd])):
                return
            self.ready.popleft()
            self.on_readable(fd)
            # Edge-triggered, the last write and the hang-up come as one event: read the end now (nothing can be
            # written after it, so no order is at stake), or the stream would stay open until the exit's grace ran out.
            if fd in self.hung_up and fd in self.outputs and fd not in self.ready:
                self.on_readable(fd)

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
        # Never in ordered mode: a second read could take a write made after one on the other stream.
        while not self.ordered and len(data) < READ_CHUNK:
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
        self._note_order(stream, offset, ring.end)
        for conn in list(self.subscribers):
            conn.send_event({"ev": "output", "proc": self.id, "stream": stream, "offset": offset}, data)
        if self.window and self._window_full(stream) and not self.ordered:
            self.update_readers()

    def _note_order(self, stream, offset, end):
        if len(self.rings) < 2:
            return
        last = self.order[-1] if self.order else None
        if last is not None and last[0] == stream and last[2] == offset:
            self.order[-1] = (stream, last[1], end)
        else:
            self.order.append((stream, offset, end))
        # Drop entries whose bytes the rings no longer hold, and the oldest past the cap.
        while self.order and (len(self.order) > ORDER_ENTRIES or self.order[0][2] <= self.rings[self.order[0][0]].start):
            self.order.popleft()

    def replay(self, offsets):
        """(stream, offset, bytes) of everything from `offsets` on, in the order it was read."""
        start = {s: max(int(offsets.get(s, 0)), r.start) for s, r in self.rings.items()}
        # Bytes older than the first entry of their stream: read order unknown, stream by stream first.
        first = {s: r.end for s, r in self.rings.items()}
        for stream, offset, _ in self.order:
            first[stream] = min(first[stream], offset)
        for stream, ring in self.rings.items():
            yield from ((stream, o, c) for o, c in ring.read_range(start[stream], first[stream]))
        for stream, offset, end in self.order:
            yield from ((stream, o, c) for o, c in self.rings[stream].read_range(max(offset, start[stream]), end))

    def _close_output(self, fd):
        if fd in self.reading:
            self.loop.remove_reader(fd)
            self.reading.discard(fd)
        if self.epoll is not None:
            self.epoll.unregister(fd)
        del self.outputs[fd]
        if fd != self.stdin_fd:
            os.close(fd)
        if not self.outputs:
            if self.epoll is not None:
                self.loop.remove_reader(self.epoll.fileno())
                self.epoll.close()
                self.epoll = None
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
        if self.ordered:
            # Always watched (events only queue a stream); what may be read now is read.
            self._read_ready()
            return
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
        # Writes already made, in order, before anything else.
        self.on_ordered_events(drain=True)
        for fd in list(self.outputs):
            # Drain what is already buffered, then stop listening; a background child that keeps
            # writing is cut off after a bounded number of reads rather than holding the guest.
            for _ in range(DRAIN_READS):
                if fd not in self.outputs:
                    break
                self.on_readable(fd)
                if fd in self.outputs and not self._readable_now(fd):
                    self._close_output(fd)
            if fd in self.outputs:
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
    # Replay (in the order it was read) then subscribe within one loop turn: no byte can slip between.
    for stream, offset, chunk in proc.replay(offsets):
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
