"""Entry point of the guest agent: `python3 -I <this directory> [--listen PATH]`.

Run as a directory, the interpreter puts it on sys.path (even isolated with -I),
so the package beside this file is found without any environment.
"""

import sys

# The code sits on a read-only mount inside the computer: do not try to write bytecode next to it.
sys.dont_write_bytecode = True

from hangar_guest.main import main  # noqa: E402

main()
