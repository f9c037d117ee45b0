"""Op machine: a VM started from another VM's memory takes an identity of its own.

A computer created from a warm memory image (the VM driver boots a template
machine once and starts new computers from its saved memory) begins as a copy
of that machine: its hostname, its clock where the image was saved, and its
kernel's random generator in the very state of every other copy. This op
gives it its hostname, the host's time, and fresh entropy from the host with
an immediate reseed, before anything of the tenant's runs.
"""

import base64
import fcntl
import os
import re
import socket
import struct
import time

from .common import GuestError, log

# <linux/random.h>: _IOW('R', 0x03, int[2]) and _IO('R', 0x07).
RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207
HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _replace(path, text):
    # A symlink left on the disk must not lead the write elsewhere (the sandbox's init does the same).
    if os.path.islink(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write(text)


def handle_machine(guest, conn, req_id, req, payload):
    hostname = req.get("hostname")
    if not isinstance(hostname, str) or not HOSTNAME.match(hostname):
        raise GuestError("BAD_REQUEST", "hostname must be lower-case letters, digits and dashes")
    try:
        entropy = base64.b64decode(req.get("entropy", ""), validate=True)
    except (ValueError, TypeError):
        raise GuestError("BAD_REQUEST", "entropy must be base64") from None
    if not 16 <= len(entropy) <= 512:
        raise GuestError("BAD_REQUEST", "entropy must be 16 to 512 bytes")
    time_ms = req.get("time_ms")
    if not isinstance(time_ms, int) or time_ms <= 0:
        raise GuestError("BAD_REQUEST", "time_ms must be a positive integer")
    try:
        time.clock_settime(time.CLOCK_REALTIME, time_ms / 1000)
        fd = os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, RNDADDENTROPY, struct.pack("ii", len(entropy) * 8, len(entropy)) + entropy)
            fcntl.ioctl(fd, RNDRESEEDCRNG)
        finally:
            os.close(fd)
        socket.sethostname(hostname)
        _replace("/etc/hostname", hostname + "\n")
        _replace("/etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    except OSError as e:
        raise GuestError("FAILED", f"cannot set the machine's identity: {e}") from None
    # A copy never boots, so its log would otherwise have no line of its guest agent at all.
    log(f"serving as {hostname}, started from a saved machine's memory")
    conn.reply(req_id, {})


HANDLERS = {"machine": handle_machine}
