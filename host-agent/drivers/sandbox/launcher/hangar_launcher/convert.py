"""Converting a disk of the old layout into a disk image.

The old layout kept a computer's overlay upper dir as a plain directory on
the host's file system, used by an overlay mounted by host root, which marks
opaque directories and other overlay state in trusted.overlay.* xattrs. The new
overlay is mounted inside the computer's user namespace with `userxattr`,
which reads user.overlay.* instead. So: copy the upper dir into the new image
(owners, modes, whiteouts and xattrs as they are: its owners were already the
computer's own 0-based ids), then rename every trusted.overlay.* xattr to
user.overlay.*. Symlinks cannot carry user.* xattrs; the only overlay marks
they could have (origin, for NFS export and index=on) are dropped, which
overlayfs tolerates. Runs in a private mount namespace of its own.
"""

import os
import subprocess
import sys
import tempfile

from . import syscalls as sc

PREFIX_OLD = b"trusted.overlay."
PREFIX_NEW = b"user.overlay."


def rename_xattrs(root):
    moved = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            try:
                attrs = os.listxattr(name, follow_symlinks=False)
            except OSError:
                continue
            for attr in attrs:
                raw = attr.encode()
                if not raw.startswith(PREFIX_OLD):
                    continue
                value = os.getxattr(name, attr, follow_symlinks=False)
                new = (PREFIX_NEW + raw[len(PREFIX_OLD):]).decode()
                try:
                    os.setxattr(name, new, value, follow_symlinks=False)
                    moved += 1
                except OSError:
                    pass  # a symlink or special file: see the module doc
                os.removexattr(name, attr, follow_symlinks=False)
    return moved


def main(upper, image):
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    mnt = tempfile.mkdtemp(prefix="hangar-convert-")
    try:
        subprocess.run(["mount", "-t", "ext4", "-o", "loop", image, mnt], check=True)
        try:
            os.makedirs(f"{mnt}/upper", mode=0o755)
            os.makedirs(f"{mnt}/work", mode=0o755)
            subprocess.run(["cp", "-a", f"{upper}/.", f"{mnt}/upper/"], check=True)
            moved = rename_xattrs(f"{mnt}/upper")
            print(f"hangar-convert: copied {upper}, {moved} overlay marks moved to user.overlay.*", file=sys.stderr)
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        os.rmdir(mnt)
