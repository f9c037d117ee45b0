"""Screenshots: the root window's pixels read with GetImage and encoded as PNG in memory (no files)."""

import struct
import zlib

from .xwire import OP_GET_IMAGE

Z_PIXMAP = 2
# Speed over size: a 1280x720 desktop encodes in a few milliseconds at level 1.
PNG_LEVEL = 1


class UnsupportedVisual(Exception):
    pass


class Image:
    """Pixels read from the screen, to be encoded (outside the X lock)."""

    def __init__(self, width, height, rgb):
        self.width = width
        self.height = height
        self.rgb = rgb

    def png(self):
        return encode_png(self.width, self.height, self.rgb)


def capture(dpy, x, y, width, height):
    """The pixels of a screen rectangle (inside the screen; the caller checks)."""
    seq = dpy.send(OP_GET_IMAGE, Z_PIXMAP, struct.pack("<IhhHHI", dpy.screen.root, x, y, width, height, 0xFFFFFFFF))
    packet = dpy.reply(seq)
    depth = packet[1]
    visual = struct.unpack_from("<I", packet, 8)[0]
    data = memoryview(packet)[32:]
    return Image(width, height, to_rgb(dpy, depth, visual, data, width, height))


def to_rgb(dpy, depth, visual, data, width, height):
    bpp, pad = dpy.formats.get(depth, (0, 0))
    _cls, red, green, blue = dpy.screen.visuals.get(visual, (0, 0, 0, 0))
    if bpp != 32 or (red, green, blue) != (0xFF0000, 0xFF00, 0xFF):
        raise UnsupportedVisual(f"screenshots need a 24-bit TrueColor screen (this one: depth {depth}, {bpp} bits per pixel)")
    stride = ((width * bpp + pad - 1) // pad) * pad // 8
    pixels = bytes(data[: stride * height]) if stride == width * 4 else b"".join(
        data[r * stride: r * stride + width * 4] for r in range(height))
    rgb = bytearray(width * height * 3)
    if dpy.image_byte_order == 0:  # LSBFirst: B G R X in memory
        rgb[0::3] = pixels[2::4]
        rgb[1::3] = pixels[1::4]
        rgb[2::3] = pixels[0::4]
    else:  # MSBFirst: X R G B
        rgb[0::3] = pixels[1::4]
        rgb[1::3] = pixels[2::4]
        rgb[2::3] = pixels[3::4]
    return rgb


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(width, height, rgb, level=PNG_LEVEL):
    """A PNG of 8-bit RGB rows (filter type 0 on every row)."""
    row = width * 3
    raw = bytearray((row + 1) * height)
    src = memoryview(rgb)
    for r in range(height):
        start = r * (row + 1) + 1
        raw[start:start + row] = src[r * row:(r + 1) * row]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw), level)) + _chunk(b"IEND", b"")

