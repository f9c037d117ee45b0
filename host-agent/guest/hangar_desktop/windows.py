"""Top-level windows as the window manager lists them (EWMH), and focusing one."""

import struct
import time

from .xwire import (
    OP_CONFIGURE_WINDOW, OP_GET_GEOMETRY, OP_SET_INPUT_FOCUS, OP_TRANSLATE_COORDINATES, XError,
)

SUBSTRUCTURE_MASK = (1 << 19) | (1 << 20)  # SubstructureNotify | SubstructureRedirect
# Window types a person does not see as windows: the desktop background and panels.
HIDDEN_TYPES = ("_NET_WM_WINDOW_TYPE_DESKTOP", "_NET_WM_WINDOW_TYPE_DOCK")
FOCUS_WAIT_S = 2.0


class WindowNotFound(Exception):
    pass


class Windows:
    def __init__(self, dpy):
        self.dpy = dpy
        self._atoms = {}

    def atom(self, name):
        a = self._atoms.get(name)
        if a is None:
            a = self.dpy.intern_atom(name)
            self._atoms[name] = a
        return a

    def cardinals(self, window, name):
        ptype, fmt, value = self.dpy.get_property(window, self.atom(name))
        if fmt != 32 or not value:
            return []
        return list(struct.unpack(f"<{len(value) // 4}I", value))

    def client_list(self):
        return self.cardinals(self.dpy.screen.root, "_NET_CLIENT_LIST")

    def active(self):
        active = self.cardinals(self.dpy.screen.root, "_NET_ACTIVE_WINDOW")
        return active[0] if active else 0

    def wm_running(self):
        """Whether an EWMH window manager has announced itself."""
        check = self.cardinals(self.dpy.screen.root, "_NET_SUPPORTING_WM_CHECK")
        return bool(check and check[0])

    def shell_windows(self):
        """(a panel is managed, a desktop window is managed): what a drawn desktop has besides its window manager."""
        dock = self.atom("_NET_WM_WINDOW_TYPE_DOCK")
        desktop = self.atom("_NET_WM_WINDOW_TYPE_DESKTOP")
        panel = background = False
        for window in self.client_list():
            try:
                types = self.cardinals(window, "_NET_WM_WINDOW_TYPE")
            except XError:
                continue
            panel = panel or dock in types
            background = background or desktop in types
        return panel, background

    def new_window(self, before, pid):
        """A window that appeared since `before` was listed, preferring one of process `pid`; None when none has yet."""
        active = self.active()
        found = None
        for window in self.client_list():
            if window in before:
                continue
            try:
                info = self.describe(window, active)
            except XError:
                continue
            if info.pop("_hidden_type"):
                continue
            if info["pid"] == pid:
                return info
            found = found or info
        return found

    def title(self, window):
        _t, fmt, value = self.dpy.get_property(window, self.atom("_NET_WM_NAME"), self.atom("UTF8_STRING"))
        if fmt == 8 and value:
            return value.decode("utf-8", "replace")
        _t, fmt, value = self.dpy.get_property(window, self.atom("WM_NAME"))
        return value.decode("latin-1") if fmt == 8 else ""

    def app(self, window):
        """The class part of WM_CLASS ("Firefox-esr", "Xfce4-terminal")."""
        _t, fmt, value = self.dpy.get_property(window, self.atom("WM_CLASS"))
        if fmt != 8 or not value:
            return None
        parts = value.split(b"\0")
        name = parts[1] if len(parts) > 1 and parts[1] else parts[0]
        return name.decode("latin-1")

    def geometry(self, window):
        """(x, y, width, height) of the window's content on the screen."""
        seq = self.dpy.send(OP_GET_GEOMETRY, 0, struct.pack("<I", window))
        packet = self.dpy.reply(seq)
        width, height = struct.unpack_from("<HH", packet, 16)
        seq = self.dpy.send(OP_TRANSLATE_COORDINATES, 0, struct.pack("<IIhh", window, self.dpy.screen.root, 0, 0))
        packet = self.dpy.reply(seq)
        x, y = struct.unpack_from("<hh", packet, 12)
        return x, y, width, height

    def describe(self, window, active):
        types = self.cardinals(window, "_NET_WM_WINDOW_TYPE")
        state = self.cardinals(window, "_NET_WM_STATE")
        pid = self.cardinals(window, "_NET_WM_PID")
        x, y, width, height = self.geometry(window)
        return {
            "id": str(window),
            "title": self.title(window),
            "app": self.app(window),
            "pid": pid[0] if pid else None,
            "x": x, "y": y, "width": width, "height": height,
            "geometry": {"x": x, "y": y, "width": width, "height": height},
            "focused": window == active,
            "minimized": self.atom("_NET_WM_STATE_HIDDEN") in state,
            "_hidden_type": any(self.atom(t) in types for t in HIDDEN_TYPES),
        }

    def list(self, include_all=False):
        """Windows in stacking-independent client-list order; the desktop and panels only with include_all."""
        active = self.active()
        out = []
        for window in self.client_list():
            try:
                info = self.describe(window, active)
            except XError:
                continue  # closed while we looked at it
            hidden = info.pop("_hidden_type")
            if hidden and not include_all:
                continue
            out.append(info)
        return out

    def focus(self, window):
        """Activates a window through the window manager (raising and un-minimizing it); answers once it has focus."""
        if window not in self.client_list():
            raise WindowNotFound(f"no window with id {window} on the desktop; GET …/desktop/windows lists them")
        dpy = self.dpy
        # Source 2: a pager or tool acting for the user, which window managers obey.
        dpy.send_client_message(dpy.screen.root, SUBSTRUCTURE_MASK, window, self.atom("_NET_ACTIVE_WINDOW"), [2])
        dpy.sync()
        deadline = time.monotonic() + FOCUS_WAIT_S
        while time.monotonic() < deadline:
            if self.active() == window:
                return True
            time.sleep(0.02)
        # No window manager honoured the request: raise it and give it the keyboard ourselves.
        try:
            dpy.send(OP_CONFIGURE_WINDOW, 0, struct.pack("<IHxxI", window, 0x40, 0))
            dpy.send(OP_SET_INPUT_FOCUS, 1, struct.pack("<II", window, 0))
            dpy.sync()
        except XError as e:
            raise WindowNotFound(f"window {window} cannot take focus: {e}") from e
        return dpy.get_input_focus() == window
