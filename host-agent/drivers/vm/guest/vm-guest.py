"""The guest agent in a VM: the same agent as in a sandbox, serving its
virtio-serial port (the host's end is a socket of QEMU's) instead of a unix
socket. Run by the VM's init as `python3 -I vm-guest.py --serial PORT`.
"""

import asyncio
import os
import signal
import sys

# The code sits on a read-only disk inside the computer.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from hangar_vm_serial import SerialChannel  # noqa: E402

try:
    from hangar_guest.common import BOOT_ID, log
    from hangar_guest.framing import Connection
    from hangar_guest.main import Guest
except ImportError:
    # The guest agent as one file.
    import importlib.util

    _spec = importlib.util.spec_from_file_location("hangar_guest_single", os.path.join(HERE, "hangar-guest.py"))
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    BOOT_ID, log, Connection, Guest = _mod.BOOT_ID, _mod.log, _mod.Connection, _mod.Guest


async def serve(port):
    loop = asyncio.get_running_loop()
    guest = Guest(loop)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    SerialChannel(loop, port, lambda: Connection(guest))
    with open("/proc/uptime") as f:
        up = f.read().split()[0]
    log(f"serving {port} (boot {BOOT_ID}, {up} s after the VM started)")
    await stop


def main():
    args = sys.argv[1:]
    if len(args) != 2 or args[0] != "--serial":
        print("usage: vm-guest.py --serial /dev/virtio-ports/NAME", file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(args[1]))


if __name__ == "__main__":
    main()
