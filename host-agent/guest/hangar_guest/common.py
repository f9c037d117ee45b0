"""What every part of the guest shares: its version, its error type, logging, this boot's identity."""

import os
import sys
import time
import uuid

GUEST_VERSION = "1.4.0"
PROTOCOL = {"major": 1, "minor": 4}

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
