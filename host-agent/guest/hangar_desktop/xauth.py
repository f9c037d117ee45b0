"""Xauthority files: the MIT-MAGIC-COOKIE-1 the X server checks and every X client presents.

Format (big-endian), one entry after another:
    u16 family | u16 len + address | u16 len + display number | u16 len + auth name | u16 len + auth data
"""

import os
import struct

COOKIE_NAME = b"MIT-MAGIC-COOKIE-1"
FAMILY_WILD = 0xFFFF


def default_path():
    explicit = os.environ.get("XAUTHORITY")
    if explicit:
        return explicit
    return os.path.join(os.path.expanduser("~"), ".Xauthority")


def _field(data, pos):
    (n,) = struct.unpack_from(">H", data, pos)
    return data[pos + 2:pos + 2 + n], pos + 2 + n


def read_entries(path):
    """[(family, address, number, name, data)] of an Xauthority file; [] when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return []
    entries = []
    pos = 0
    try:
        while pos + 2 <= len(data):
            (family,) = struct.unpack_from(">H", data, pos)
            address, pos = _field(data, pos + 2)
            number, pos = _field(data, pos)
            name, pos = _field(data, pos)
            cookie, pos = _field(data, pos)
            entries.append((family, address, number, name, cookie))
    except struct.error:
        pass  # a truncated tail: keep what parsed
    return entries


def cookie_for(display_number, path=None):
    """The cookie for display `display_number`, or None (the server may not check one)."""
    for _family, _address, number, name, cookie in read_entries(path or default_path()):
        if name == COOKIE_NAME and number in (str(display_number).encode(), b""):
            return cookie
    return None


def write_cookie(path, display_number, cookie):
    """Writes an Xauthority file that grants `cookie` for display `display_number` on any address, keeping other displays' entries."""
    keep = [e for e in read_entries(path) if e[2] != str(display_number).encode()]
    out = bytearray()
    for family, address, number, name, data in [(FAMILY_WILD, b"", str(display_number).encode(), COOKIE_NAME, cookie)] + keep:
        out += struct.pack(">H", family)
        for part in (address, number, name, data):
            out += struct.pack(">H", len(part)) + part
    tmp = f"{path}.hangar-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, bytes(out))
    finally:
        os.close(fd)
    os.replace(tmp, path)
