"""Command line of the desktop daemon.

    hangar-desktop start [--resolution 1280x720] [--port 5990] [--vnc-port 5900] [--display 0] [--foreground]
    hangar-desktop status [--port 5990]

`start` returns at once when a daemon already holds the control port; otherwise
it forks the daemon into its own session (output to a log file), waits until
its control socket listens, and exits 0, so a caller's `exec` of it returns
promptly. The daemon then brings the desktop up and keeps it up.
"""

import argparse
import json
import os
import re
import socket
import sys
import time

from . import server
from .actions import Desktop
from .session import Session

LOG_NAME = "hangar-desktop.log"
LOG_MAX = 1 << 20


def parse_resolution(text):
    m = re.fullmatch(r"(\d{3,4})x(\d{3,4})", text)
    if not m:
        raise argparse.ArgumentTypeError("resolution is WIDTHxHEIGHT, e.g. 1280x720")
    w, h = int(m.group(1)), int(m.group(2))
    if not (320 <= w <= 3840 and 200 <= h <= 2160):
        raise argparse.ArgumentTypeError("resolution must be between 320x200 and 3840x2160")
    return w, h


def log_path():
    base = os.path.join(os.path.expanduser("~"), ".cache")
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        base = "/tmp"
    return os.path.join(base, LOG_NAME)


def open_log():
    path = log_path()
    try:
        if os.path.getsize(path) > LOG_MAX:
            os.replace(path, path + ".1")
    except OSError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def run_daemon(listener, args):
    width, height = args.resolution
    session = Session(width, height, args.display, args.vnc_port, name=socket.gethostname())
    desktop = Desktop(session)
    session.desktop_check = desktop.desktop_up
    session.tidy = desktop.tidy
    session.start()
    server.serve(listener, desktop)


def cmd_start(args):
    listener = server.bind(args.port)
    if listener is None:
        print(json.dumps({"started": False, "reason": f"port {args.port} is taken: a desktop daemon is already running"}))
        return 0
    if args.foreground:
        run_daemon(listener, args)
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        fd = open_log()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        try:
            run_daemon(listener, args)
        finally:
            os._exit(1)
    os.close(write_end)
    listener.close()
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        daemon_pid = f.read().decode() or "?"
    print(json.dumps({"started": True, "pid": int(daemon_pid) if daemon_pid.isdigit() else None, "log": log_path()}))
    return 0


def status_via_client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        recv_frame(sock)
        server.send_frame(sock, {"t": "req", "id": 1, "op": "status", "args": {}})
        header, _payload = recv_frame(sock)
    print(json.dumps(header.get("data", header)))
    return 0


def recv_frame(sock):
    prefix = server.read_exact(sock, 8)
    if prefix is None:
        raise ConnectionError("the daemon closed the connection")
    hlen, plen = server.PREFIX.unpack(prefix)
    header = json.loads(server.read_exact(sock, hlen))
    payload = server.read_exact(sock, plen) if plen else b""
    return header, payload


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hangar-desktop")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start")
    start.add_argument("--resolution", type=parse_resolution, default=(1280, 720))
    start.add_argument("--port", type=int, default=5990)
    start.add_argument("--vnc-port", type=int, default=5900)
    start.add_argument("--display", type=int, default=0)
    start.add_argument("--foreground", action="store_true")
    status = sub.add_parser("status")
    status.add_argument("--port", type=int, default=5990)
    args = parser.parse_args(argv)
    if args.cmd == "start":
        sys.exit(cmd_start(args))
    sys.exit(status_via_client(args.port))


if __name__ == "__main__":
    main()
