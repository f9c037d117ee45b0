"""Entry point of the desktop daemon: `python3 -I <guest dir>/desktop.py start|status ...`.

Isolated mode (-I) does not put a script's directory on sys.path, so this
script puts its own there: the hangar_desktop package beside it is found
without any environment.
"""

import os
import sys

# The code sits on a read-only mount inside the computer: do not try to write bytecode next to it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hangar_desktop.main import main  # noqa: E402

main()
