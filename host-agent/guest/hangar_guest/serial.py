"""The guest's channel in a virtual machine: one virtio-serial port (`--serial PORT`).

A unix socket gives the guest a new connection per host client; a
virtio-serial port is one byte stream for the machine's whole life, and the
host's side comes and goes (the host agent restarts, reconnects). The kernel
tells us when it goes: a read returns end-of-file once what the host sent is
read and the host side is closed. Then the connection is over, exactly like
a closed socket: its partly read frame and its subscriptions are dropped. When
the host side opens again (the kernel raises SIGIO, and a slow timer checks
too) a fresh connection starts, and it says hello first, as on a socket.
"""

import asyncio
import fcntl
import os
import select
import signal


READ_CHUNK = 256 * 1024
# Above this much unsent output the connection asks its processes to pause (flow control).
HIGH_WATER = 1 << 20
LOW_WATER = 256 * 1024
# How often a port whose host side is closed is checked, should a SIGIO be missed.
IDLE_CHECK_S = 1.0


class PortTransport(asyncio.Transport):
    """One host connection over the port: a transport as the protocol expects from a socket."""

    def __init__(self, loop, fd, protocol, on_lost):
        super().__init__()
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._closing = False
        self._writing = False
        self._paused_protocol = False
        loop.add_reader(fd, self._read)
        protocol.connection_made(self)

    # -- reading

    def _read(self):
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lose(e)
            return
        if not data:
            self._lose(None)  # the host side closed
            return
        self._protocol.data_received(data)

    # -- writing

    def write(self, data):
        if self._closing or not data:
            return
        if not self._buffer:
            try:
                n = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                self._lose(e)
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self._buffer += data
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._flush)
        if not self._paused_protocol and len(self._buffer) > HIGH_WATER:
            self._paused_protocol = True
            self._protocol.pause_writing()

    def writelines(self, chunks):
        self.write(b"".join(chunks))

    def _flush(self):
        try:
            n = os.write(self._fd, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lose(e)
            return
        del self._buffer[:n]
        if not self._buffer:
            self._writing = False
            self._loop.remove_writer(self._fd)
        if self._paused_protocol and len(self._buffer) <= LOW_WATER:
            self._paused_protocol = False
            self._protocol.resume_writing()

    def get_write_buffer_size(self):
        return len(self._buffer)

    # -- the end of this connection (the port stays open)

    def is_closing(self):
        return self._closing

    def close(self):
        # The guest gives up on this connection (a malformed frame). Whatever the host
        # sends until it reconnects still belongs to it: read and drop it until the
        # host side closes, then the next connection starts clean.
        self._lose(None, drain=True)

    def abort(self):
        self.close()

    def _lose(self, exc, drain=False):
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
        self._buffer.clear()
        self._protocol.connection_lost(exc)
        if drain:
            self._loop.add_reader(self._fd, self._drain)
        else:
            self._on_lost()

    def _drain(self):
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(self._fd)
            self._on_lost()


class SerialChannel:
    """Serves one protocol instance per host connection on a virtio-serial port."""

    def __init__(self, loop, path, make_protocol):
        self._loop = loop
        self._make_protocol = make_protocol
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        fcntl.fcntl(self._fd, fcntl.F_SETOWN, os.getpid())
        self._transport = None
        self._timer = None
        loop.add_signal_handler(signal.SIGIO, self._check)
        self._check()

    def _host_connected(self):
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLOUT)
        return not any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def _set_async(self, on):
        # SIGIO on every arriving chunk is only wanted while we wait for the host.
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_ASYNC if on else flags & ~os.O_ASYNC)

    def _check(self):
        if self._transport is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._host_connected():
            self._set_async(True)
            self._timer = self._loop.call_later(IDLE_CHECK_S, self._check)
            return
        self._set_async(False)
        self._transport = PortTransport(self._loop, self._fd, self._make_protocol(), self._lost)

    def _lost(self):
        self._transport = None
        # Let the loop run before looking again: the host may be gone for good or back already.
        self._loop.call_soon(self._check)
