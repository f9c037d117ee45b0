"""Op exec: one command run to completion, its combined output returned in the reply."""

import os
import signal
import subprocess
import time

from .framing import MAX_PAYLOAD
from .processes import EOF_GRACE_S, KILL_GRACE_S, READ_CHUNK, exit_status, kill_group, set_nonblocking


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



def handle_exec(guest, conn, req_id, req, payload):
    ExecRun(guest.loop, guest.runner, req, lambda result, output: conn.reply(req_id, result, output), payload)
