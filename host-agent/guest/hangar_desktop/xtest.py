"""Input through the X test extension (XTEST): key, button and motion events as if from real devices."""

import struct

from .xwire import XConnectionError

KEY_PRESS = 2
KEY_RELEASE = 3
BUTTON_PRESS = 4
BUTTON_RELEASE = 5
MOTION_NOTIFY = 6
_FAKE_INPUT = 2  # XTestFakeInput minor opcode

BUTTONS = {"left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}
SCROLL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}


class XTest:
    """Builds XTestFakeInput requests; the caller sends them (several at once when it can) and syncs."""

    def __init__(self, dpy):
        ext = dpy.query_extension("XTEST")
        if ext is None:
            raise XConnectionError("the X server has no XTEST extension: input cannot be delivered")
        self.dpy = dpy
        self.major = ext[0]

    def event(self, kind, detail, x=0, y=0):
        """One fake event as (opcode, data byte, body) for Display.send_many."""
        root = self.dpy.screen.root if kind == MOTION_NOTIFY else 0
        body = struct.pack("<BBxxIIxxxxxxxxhhxxxxxxxB", kind, detail, 0, root, x, y, 0)
        return (self.major, _FAKE_INPUT, body)

    def motion(self, x, y):
        return self.event(MOTION_NOTIFY, 0, x, y)

    def button(self, button, press):
        return self.event(BUTTON_PRESS if press else BUTTON_RELEASE, button)

    def key(self, keycode, press):
        return self.event(KEY_PRESS if press else KEY_RELEASE, keycode)
