"""Knowing that the focused application has read the keys sent to it: a _NET_WM_PING round trip.

A spare keycode may be bound to a new symbol only once the application has
translated every press of it with the old one; otherwise it reads an earlier
press with the new symbol (an emulated VM's terminal, a busy or stopped
application). X says nothing about what a client has read, but a client
that takes part in _NET_WM_PING (EWMH: GTK and Qt applications do) answers
a ping from its event loop, in turn with the events before it: its answer
means everything sent to it before the ping was read. Applications that do
not take part (xterm), or do not answer in time, leave the caller to wait
by the clock instead.
"""

import os
import struct

from .xwire import EVENT_CLIENT_MESSAGE, XError

# A pong is sent to the root window for its window manager; selecting this on the root sees it too.
SUBSTRUCTURE_NOTIFY = 1 << 19
# How long an application may take to answer (a stopped or hung one never does; the keyboard then
# stops asking it for the rest of the text).
PONG_TIMEOUT_S = 10.0
# Window levels walked up from the focus to the application's top-level window.
MAX_DEPTH = 16


class AppFence:
    def __init__(self, dpy, windows):
        self.dpy = dpy
        self.windows = windows
        self.protocols = windows.atom("WM_PROTOCOLS")
        self.ping = windows.atom("_NET_WM_PING")
        # The ping's "timestamp", echoed back: ours, so no other ping's answer is taken for it.
        self.token = struct.unpack("<I", os.urandom(4))[0]

    def _target(self):
        """The window holding the input focus, or the nearest ancestor that says it answers pings; None when none does."""
        dpy = self.dpy
        window = dpy.get_input_focus()
        for _ in range(MAX_DEPTH):
            if window in (0, 1) or window == dpy.screen.root:  # None, PointerRoot, the root
                return None
            if self.ping in self.windows.cardinals(window, "WM_PROTOCOLS"):
                return window
            window = dpy.parent_of(window)
        return None

    def wait(self, timeout=PONG_TIMEOUT_S):
        """True once the focused application has answered a ping sent after everything before this call;
        False when it cannot be asked or did not answer within `timeout` seconds."""
        dpy = self.dpy
        try:
            window = self._target()
        except XError:
            return False  # the focus went away while we looked
        if window is None:
            return False
        self.token = (self.token + 1) & 0xFFFFFFFF
        token = self.token
        root = dpy.screen.root
        dpy.select_input(root, SUBSTRUCTURE_NOTIFY)
        try:
            dpy.send_client_message(window, 0, window, self.protocols, [self.ping, token, window])
            dpy.sync()
            pong = dpy.wait_event(
                lambda p: p[0] & 0x7F == EVENT_CLIENT_MESSAGE and struct.unpack_from("<III", p, 8) == (self.protocols, self.ping, token),
                timeout,
            )
        except XError:
            pong = None
        finally:
            dpy.select_input(root, 0)
            dpy.sync()
        return pong is not None
