"""Host uid/gid ranges for computers, unique machine-wide.

Each running computer maps its uids and gids 0..65535 onto a range of host ids
of its own, [FIRST_HOST_ID + slot * 65536, ... + 65536). Slots are lock files in
RANGE_DIR: a launcher holds an exclusive flock on its slot's file for as long
as it (and so its computer) lives, and the kernel drops the lock when it dies,
however it dies. Taking a slot is trying the files in order until a lock
succeeds; nothing is ever stale, and several host agents with different data
dirs on one machine share the same slots. The file's text says who holds it,
for operators.

The ranges lie between 0x70000000 and 0x80000000: far above the ids Debian
gives users, system services and /etc/subuid ranges (100000 upwards), and
below 2^31, where some tools read ids as negative numbers.
"""

import fcntl
import os

RANGE_DIR = "/run/hangar/uid-ranges"
FIRST_HOST_ID = 0x70000000
RANGE_SIZE = 65536
SLOTS = 4096


class UidRange:
    def __init__(self, slot, fd):
        self.slot = slot
        self.fd = fd
        self.base = FIRST_HOST_ID + slot * RANGE_SIZE

    def map_line(self):
        return f"0 {self.base} {RANGE_SIZE}\n"


def allocate(owner):
    """Takes the first free slot; the returned range's fd must stay open (and un-inherited) while the computer runs."""
    os.makedirs(RANGE_DIR, mode=0o700, exist_ok=True)
    for slot in range(SLOTS):
        path = os.path.join(RANGE_DIR, f"{slot}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner} pid {os.getpid()}\n".encode(), 0)
        return UidRange(slot, fd)
    raise RuntimeError(f"all {SLOTS} uid ranges are in use: too many computers run on this machine")
