"""A small X11 protocol client over the display's unix socket (stdlib only).

The daemon speaks the X protocol itself instead of loading Xlib bindings, so
it needs nothing from the computer's Python packages: only a Python runtime
and the X server. It implements what the desktop needs: connection setup
with MIT-MAGIC-COOKIE-1, requests with replies, void requests checked by a
round trip, extensions by name, and events kept for whoever asks or waits
(MappingNotify is noted; ClientMessages and extension events such as
XFixes' are kept; other core events are dropped).

One connection is not thread-safe; its owner serializes transactions on it.
"""

import os
import select
import socket
import struct
import time

from . import xauth

# Core request opcodes used by the daemon.
OP_CHANGE_WINDOW_ATTRIBUTES = 2
OP_CONFIGURE_WINDOW = 12
OP_GET_GEOMETRY = 14
OP_QUERY_TREE = 15
OP_INTERN_ATOM = 16
OP_GET_PROPERTY = 20
OP_GET_SELECTION_OWNER = 23
OP_SEND_EVENT = 25
OP_QUERY_POINTER = 38
OP_TRANSLATE_COORDINATES = 40
OP_SET_INPUT_FOCUS = 42
OP_GET_INPUT_FOCUS = 43
OP_GET_IMAGE = 73
OP_QUERY_EXTENSION = 98
OP_CHANGE_KEYBOARD_MAPPING = 100
OP_GET_KEYBOARD_MAPPING = 101
OP_CHANGE_KEYBOARD_CONTROL = 102
OP_GET_KEYBOARD_CONTROL = 103
OP_GET_MODIFIER_MAPPING = 119

EVENT_CLIENT_MESSAGE = 33
EVENT_MAPPING_NOTIFY = 34
EVENT_GENERIC = 35
# ChangeWindowAttributes' value bit for the event mask.
CW_EVENT_MASK = 1 << 11

ERROR_NAMES = {
    1: "BadRequest", 2: "BadValue", 3: "BadWindow", 4: "BadPixmap", 5: "BadAtom", 6: "BadCursor",
    7: "BadFont", 8: "BadMatch", 9: "BadDrawable", 10: "BadAccess", 11: "BadAlloc", 12: "BadColor",
    13: "BadGC", 14: "BadIDChoice", 15: "BadName", 16: "BadLength", 17: "BadImplementation",
}


class XError(Exception):
    """An X protocol error answering one of our requests."""

    def __init__(self, code, seq, bad_value, major, minor=0):
        self.code = code
        self.bad_value = bad_value
        self.major = major
        self.minor = minor
        super().__init__(f"X error {ERROR_NAMES.get(code, code)} (request {major}.{minor}, value {bad_value:#x}) for request {seq}")


class XConnectionError(Exception):
    """The display cannot be reached, refused us, or went away."""


def pad4(n):
    return (4 - n % 4) % 4


def padded(data):
    return data + b"\0" * pad4(len(data))


class Screen:
    """What the connection setup says about screen 0."""

    def __init__(self, root, width, height, root_depth, root_visual):
        self.root = root
        self.width = width
        self.height = height
        self.root_depth = root_depth
        self.root_visual = root_visual
        self.visuals = {}  # visual id -> (class, red_mask, green_mask, blue_mask)


class Display:
    """One X connection (screen 0 of display `:N`)."""

    def __init__(self, display=":0", authority=None, timeout=10.0):
        self.name = display
        number = parse_display(display)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(f"/tmp/.X11-unix/X{number}")
        except OSError as e:
            self.sock.close()
            raise XConnectionError(f"cannot connect to display {display}: {e}") from e
        self.seq = 0
        self.events = []
        self.errors = {}
        self.mapping_changed = False
        try:
            self._setup(xauth.cookie_for(number, authority))
        except Exception:
            self.sock.close()
            raise
        # After setup, replies to big requests (a full-screen image) may take longer than a setup.
        self.sock.settimeout(max(timeout, 30.0))

    # ------------------------------------------------------------ setup

    def _setup(self, cookie):
        name = b"MIT-MAGIC-COOKIE-1" if cookie else b""
        data = cookie or b""
        self.sock.sendall(struct.pack("<BxHHHHxx", 0x6C, 11, 0, len(name), len(data)) + padded(name) + padded(data))
        head = self._read_exact(8)
        status, reason_len, _major, _minor, extra = struct.unpack("<BBHHH", head)
        body = self._read_exact(extra * 4)
        if status != 1:
            reason = body[:reason_len] if status == 0 else body
            raise XConnectionError(f"display {self.name} refused the connection: {reason.decode('latin-1').strip()}")
        (self.release, self.id_base, self.id_mask, _motion, vendor_len, self.max_request_len, n_screens, n_formats,
         self.image_byte_order, _bit_order, _unit, _pad, self.min_keycode, self.max_keycode) = struct.unpack_from("<IIIIHHBBBBBBBB", body, 0)
        pos = 32 + vendor_len + pad4(vendor_len)
        self.formats = {}
        for _ in range(n_formats):
            depth, bpp, scanline_pad = struct.unpack_from("<BBB", body, pos)
            self.formats[depth] = (bpp, scanline_pad)
            pos += 8
        if n_screens < 1:
            raise XConnectionError(f"display {self.name} has no screens")
        root, _cmap, _white, _black, _masks, width, height, _mmw, _mmh, _mini, _maxi, visual, _bs, _su, depth, n_depths = struct.unpack_from(
            "<IIIIIHHHHHHIBBBB", body, pos)
        pos += 40
        self.screen = Screen(root, width, height, depth, visual)
        for _ in range(n_depths):
            _d, n_visuals = struct.unpack_from("<BxH", body, pos)
            pos += 8
            for _ in range(n_visuals):
                vid, cls, _bits, _entries, red, green, blue = struct.unpack_from("<IBBHIII", body, pos)
                self.screen.visuals[vid] = (cls, red, green, blue)
                pos += 24

    # ------------------------------------------------------------ transport

    def _read_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except OSError as e:
                raise XConnectionError(f"display {self.name}: {e}") from e
            if k == 0:
                raise XConnectionError(f"display {self.name} closed the connection")
            got += k
        return buf

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise XConnectionError(f"display {self.name}: {e}") from e
        self.seq += 1
        return self.seq

    def send(self, opcode, data_byte=0, body=b""):
        """Sends one request; returns its sequence number. `body` must be padded to 4 bytes."""
        length = 1 + len(body) // 4
        return self._send(struct.pack("<BBH", opcode, data_byte, length) + body)

    def send_many(self, requests):
        """Sends several requests in one write; returns the sequence number of the last."""
        chunks = []
        for opcode, data_byte, body in requests:
            chunks.append(struct.pack("<BBH", opcode, data_byte, 1 + len(body) // 4) + body)
        if not chunks:
            return self.seq
        try:
            self.sock.sendall(b"".join(chunks))
        except OSError as e:
            raise XConnectionError(f"display {self.name}: {e}") from e
        self.seq += len(chunks)
        return self.seq

    def _read_packet(self):
        """Reads one reply, error or event; returns (kind, seq, bytes)."""
        head = self._read_exact(32)
        kind = head[0] & 0x7F
        seq = struct.unpack_from("<H", head, 2)[0]
        if kind == 1 or kind == EVENT_GENERIC:
            extra = struct.unpack_from("<I", head, 4)[0]
            if extra:
                head += self._read_exact(extra * 4)
        return kind, seq, head

    def _full_seq(self, low):
        """The full sequence number of a packet, given its low 16 bits (it is never ahead of what we sent)."""
        full = (self.seq & ~0xFFFF) | low
        if full > self.seq:
            full -= 0x10000
        return full

    def reply(self, seq):
        """Waits for the reply to request `seq`; raises XError if it failed."""
        while True:
            kind, low, packet = self._read_packet()
            full = self._full_seq(low)
            if kind == 0:
                err = self._error(full, packet)
                if full == seq:
                    raise err
                self.errors[full] = err
            elif kind == 1:
                if full == seq:
                    return packet
                # A reply nobody waits for any more (an earlier caller gave up): drop it.
            else:
                self._event(kind, packet)

    def _error(self, full, packet):
        bad, minor, major = struct.unpack_from("<IHB", packet, 4)
        return XError(packet[1], full, bad, major, minor)

    def wait_event(self, match, timeout):
        """The first event, kept or arriving within `timeout` seconds, that `match(packet)` accepts (taken
        off the list); None at the deadline. Events it passes over are kept or dropped as always."""
        for i, packet in enumerate(self.events):
            if match(packet):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            # Whole packets only: wait until one has begun to arrive, then read it with the usual timeout.
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            kind, low, packet = self._read_packet()
            if kind == 0:
                full = self._full_seq(low)
                self.errors[full] = self._error(full, packet)
            elif kind == 1:
                continue
            elif match(packet):
                return packet
            else:
                self._event(kind, packet)

    def select_input(self, window, mask):
        """Sets this connection's event mask on `window` (it replaces the one before)."""
        self.send(OP_CHANGE_WINDOW_ATTRIBUTES, 0, struct.pack("<III", window, CW_EVENT_MASK, mask))

    def send_client_message(self, destination, event_mask, window, message_type, data):
        """Sends a 32-bit ClientMessage about `window` (up to five values) to `destination`'s selectors of `event_mask` (0: its owner)."""
        values = list(data) + [0] * (5 - len(data))
        event = struct.pack("<BBHII5I", EVENT_CLIENT_MESSAGE, 32, 0, window, message_type, *values)
        self.send(OP_SEND_EVENT, 0, struct.pack("<II", destination, event_mask) + event)

    def _event(self, kind, packet):
        if kind == EVENT_MAPPING_NOTIFY:
            self.mapping_changed = True
        elif kind == EVENT_CLIENT_MESSAGE or kind >= EVENT_GENERIC:
            # Other core events come only from a selection made for a wait (the root's substructure
            # while a ping is out): kept, they would crowd out what the clipboard looks for.
            if len(self.events) < 256:
                self.events.append(packet)

    def sync(self):
        """A round trip: every request sent before has been processed by the server. Raises the first error any of them caused."""
        seq = self.send(OP_GET_INPUT_FOCUS)
        self.reply(seq)
        if self.errors:
            first = min(self.errors)
            err = self.errors.pop(first)
            self.errors.clear()
            raise err

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------ helpers for common requests

    def intern_atom(self, name, only_if_exists=False):
        raw = name.encode()
        seq = self.send(OP_INTERN_ATOM, 1 if only_if_exists else 0, struct.pack("<Hxx", len(raw)) + padded(raw))
        return struct.unpack_from("<I", self.reply(seq), 8)[0]

    def get_property(self, window, prop, prop_type=0, long_length=0x100000):
        """(type, format, value bytes) of a window property; type 0 when it is not set."""
        seq = self.send(OP_GET_PROPERTY, 0, struct.pack("<IIIII", window, prop, prop_type, 0, long_length))
        packet = self.reply(seq)
        fmt = packet[1]
        ptype, _after, n = struct.unpack_from("<III", packet, 8)
        size = n * (fmt // 8) if fmt else 0
        return ptype, fmt, bytes(packet[32:32 + size])

    def query_extension(self, name):
        """(major opcode, first event, first error), or None when the server lacks it."""
        raw = name.encode()
        seq = self.send(OP_QUERY_EXTENSION, 0, struct.pack("<Hxx", len(raw)) + padded(raw))
        packet = self.reply(seq)
        present, major, first_event, first_error = struct.unpack_from("<BBBB", packet, 8)
        return (major, first_event, first_error) if present else None

    def query_pointer(self):
        """(root x, root y, modifier and button mask)."""
        seq = self.send(OP_QUERY_POINTER, 0, struct.pack("<I", self.screen.root))
        packet = self.reply(seq)
        x, y = struct.unpack_from("<hh", packet, 16)
        mask = struct.unpack_from("<H", packet, 24)[0]
        return x, y, mask

    def get_input_focus(self):
        seq = self.send(OP_GET_INPUT_FOCUS)
        return struct.unpack_from("<I", self.reply(seq), 8)[0]

    def parent_of(self, window):
        """The window's parent (0 for the root)."""
        seq = self.send(OP_QUERY_TREE, 0, struct.pack("<I", window))
        return struct.unpack_from("<I", self.reply(seq), 12)[0]

    def get_selection_owner(self, selection):
        """The window owning a selection (an atom), 0 when nobody does."""
        seq = self.send(OP_GET_SELECTION_OWNER, 0, struct.pack("<I", selection))
        return struct.unpack_from("<I", self.reply(seq), 8)[0]


def parse_display(display):
    """The display number of ":N" or ":N.S"."""
    if not display.startswith(":"):
        raise XConnectionError(f"only local displays like :0 are supported, not {display!r}")
    number = display[1:].split(".", 1)[0]
    if not number.isdigit():
        raise XConnectionError(f"bad display name {display!r}")
    return int(number)


def socket_path(number):
    return f"/tmp/.X11-unix/X{number}"


def display_answers(number, authority=None):
    """Whether an X server answers on display `:number` (and lets us in)."""
    if not os.path.exists(socket_path(number)):
        return False
    try:
        Display(f":{number}", authority, timeout=2.0).close()
        return True
    except (XConnectionError, OSError):
        return False
