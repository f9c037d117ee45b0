"""The guest as a whole: its state, op dispatch, the listening socket, the command line."""

import asyncio
import os
import signal
import socket
import sys
import time
from collections import deque

from . import env, exec as exec_op, files, filestream, machine, spawn, tcp, watch
from .common import STARTED, BOOT_ID, GuestError, log
from .framing import Connection
from .processes import Reaper, Runner
from .serial import SerialChannel
from .spawn import MAX_EXITED


def handle_ping(guest, conn, req_id, req, payload):
    conn.reply(req_id, {"uptime_s": round(time.monotonic() - STARTED, 3)})


HANDLERS = {
    "ping": handle_ping,
    "setenv": env.handle_setenv,
    "exec": exec_op.handle_exec,
    **spawn.HANDLERS,
    **files.HANDLERS,
    **filestream.HANDLERS,
    **tcp.HANDLERS,
    **machine.HANDLERS,
    **watch.HANDLERS,
}

# Requests that do work in the computer: for idle watches, the computer is in use.
WORK_OPS = frozenset(["exec", "spawn", "stdin", "resize", "signal", "fs", "file_open"])


class Guest:
    def __init__(self, loop, in_vm=False):
        self.loop = loop
        self.reaper = Reaper(loop)
        self.runner = Runner(self.reaper, fork_to_switch_user=in_vm)
        self.connections = set()
        self.procs = {}
        self.exited = deque()

    def handle(self, conn, req_id, op, req, payload):
        handler = HANDLERS.get(op)
        if handler is None:
            raise GuestError("BAD_REQUEST", f"unknown op {op!r}")
        if op in WORK_OPS:
            watch.watches_of(self).activity()
        handler(self, conn, req_id, req, payload)

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


async def serve_serial(port):
    """In a VM: one virtio-serial port instead of a listening socket (serial.py)."""
    loop = asyncio.get_running_loop()
    guest = Guest(loop, in_vm=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    SerialChannel(loop, port, lambda: Connection(guest))
    with open("/proc/uptime") as f:
        up = f.read().split()[0]
    log(f"serving {port} (boot {BOOT_ID}, {up} s after the kernel started)")
    await stop


def name_process():
    """`ps` inside shows pid 1 as hangar-guest (started through its runtime's loader, it would read ld-linux)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("hangar-guest")
    except OSError:
        pass


def main():
    name_process()
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--serial":
        asyncio.run(serve_serial(args[1]))
        return
    path = "/run/hangar/guest.sock"
    if len(args) == 2 and args[0] == "--listen":
        path = args[1]
    elif args:
        print("usage: hangar-guest [--listen /path/to/guest.sock | --serial /dev/virtio-ports/NAME]", file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(path))
