"""The control operations: each validates its arguments, acts through one X connection, and answers once the X server has the input.

"Delivered" means the X server has processed the events (a round trip after
them), so a screenshot taken next sees whatever the server drew in response;
applications react in their own time, which is why an action can ask for a
screenshot after a short delay in the same call.
"""

import os
import shlex
import shutil
import struct
import subprocess
import threading
import time

from . import clipboard, keysyms, screen, xtest
from .fence import AppFence
from .keyboard import Keyboard, KeyError_
from .windows import Windows, WindowNotFound
from .xwire import OP_GET_GEOMETRY, Display, XConnectionError, XError

MAX_TEXT = 100_000
MAX_DELAY_MS = 1000
MAX_SCROLL = 100
# How long an answer waits for the pointer to reach where the action sent it (see _cursor).
POINTER_SETTLE_S = 5.0
MAX_SCREENSHOT_DELAY_MS = 10_000
DRAG_STEPS = 12
DRAG_STEP_S = 0.008
LAUNCH_WAIT_MAX_S = 30

# What `launch` understands besides commands: names people and SDKs use for the desktop's apps.
APP_ALIASES = {
    "terminal": "xfce4-terminal", "xfce4-terminal": "xfce4-terminal", "gnome-terminal": "xfce4-terminal",
    "konsole": "xfce4-terminal", "xterm": "xterm",
    "browser": "firefox-esr", "firefox": "firefox-esr", "web-browser": "firefox-esr", "chrome": "firefox-esr",
    "chromium": "firefox-esr", "google-chrome": "firefox-esr",
    "files": "thunar", "file-manager": "thunar", "filemanager": "thunar", "nautilus": "thunar", "thunar": "thunar",
    "text-editor": "mousepad", "editor": "mousepad", "gedit": "mousepad", "mousepad": "mousepad",
}

# Flags `launch` adds for an app. xfce4-terminal hands a launch to a running instance over D-Bus; when
# that instance is slow to answer (an emulated VM's, busy with earlier input) the new process stops
# waiting and opens a window of its own while the instance opens one too: one launch, two windows,
# and the later one takes the focus, and the keys typed next, from the one the launch answered with.
# A process of its own per launch opens exactly one window, the launched process's.
APP_FLAGS = {"xfce4-terminal": ["--disable-server"]}


class ActionError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def bad(message):
    return ActionError("BAD_REQUEST", message)


def _int(args, name, default=None, lo=None, hi=None):
    value = args.get(name, default)
    if value is None:
        raise bad(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise bad(f"{name} must be an integer")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise bad(f"{name} must be between {lo} and {hi}")
    return value


class Desktop:
    """The X side of the daemon: one connection, reopened after the X server restarts."""

    def __init__(self, session):
        self.session = session
        self.lock = threading.RLock()
        self.dpy = None
        self.xtest = None
        self.keyboard = None
        self.windows = None
        self.clipboard = None
        self.launched = []

    # ------------------------------------------------------------ connection

    def connect(self):
        if self.dpy is not None:
            return self.dpy
        dpy = Display(f":{self.session.number}", self.session.authority)
        try:
            self.xtest = xtest.XTest(dpy)
            self.windows = Windows(dpy)
            self.keyboard = Keyboard(dpy, self.xtest, AppFence(dpy, self.windows))
            self.clipboard = None  # made on first use, on this connection
        except Exception:
            dpy.close()
            raise
        self.dpy = dpy
        return dpy

    def drop(self):
        if self.dpy is not None:
            self.dpy.close()
        self.dpy = None

    def desktop_up(self):
        """(window manager announced, panel managed, desktop background managed): what the session's readiness waits for."""
        with self.lock:
            try:
                self.connect()
                return (self.windows.wm_running(),) + self.windows.shell_windows()
            except (XConnectionError, XError):
                self.drop()
                return False, False, False

    def tidy(self):
        """Periodic upkeep (the session's loop calls it): spare keycodes idle for a while are given back."""
        with self.lock:
            if self.keyboard is None or self.dpy is None:
                return
            try:
                self.keyboard.release_idle()
            except (XConnectionError, XError):
                self.drop()

    def screen_size(self):
        seq = self.dpy.send(OP_GET_GEOMETRY, 0, struct.pack("<I", self.dpy.screen.root))
        return struct.unpack_from("<HH", self.dpy.reply(seq), 16)

    def run(self, op, args):
        """(data, payload) of one operation; raises ActionError."""
        handler = OPS.get(op)
        if handler is None:
            raise bad(f"unknown operation {op!r}")
        if not isinstance(args, dict):
            raise bad("arguments must be an object")
        if op != "status" and not self.session.ready():
            raise ActionError("NOT_READY", f"the desktop is starting; try again in {self.session.retry_after()} s")
        for attempt in (1, 2):
            try:
                with self.lock:
                    self.connect()
                    data, payload = handler(self, args)
                break
            except XConnectionError as e:
                self.drop()
                if attempt == 2:
                    raise ActionError("NOT_READY", f"the desktop's X server is not answering ({e}); try again shortly") from e
            except XError as e:
                self.drop()
                raise ActionError("FAILED", f"{op}: {e}") from e
            except KeyError_ as e:
                raise bad(str(e)) from e
            except WindowNotFound as e:
                raise ActionError("NOT_FOUND", str(e)) from e
            except (RuntimeError, screen.UnsupportedVisual) as e:
                raise ActionError("FAILED", f"{op}: {e}") from e
        if isinstance(payload, screen.Image):
            payload = payload.png()  # encoded outside the lock: other calls go on meanwhile
        after = args.get("screenshot")
        if op not in ("screenshot", "status") and after:
            delay = _int(after if isinstance(after, dict) else {}, "delay_ms", 0, 0, MAX_SCREENSHOT_DELAY_MS)
            if delay:
                time.sleep(delay / 1000)
            with self.lock:
                self.connect()
                w, h = self.screen_size()
                image = screen.capture(self.dpy, 0, 0, w, h)
            payload = image.png()
            data = dict(data, screenshot={"format": "png", "width": w, "height": h, "bytes": len(payload)})
        return data, payload

    # ------------------------------------------------------------ coordinates

    def point(self, args, xname="x", yname="y", required=True):
        """A screen pixel from the arguments (None when optional and absent); out of the screen is a bad request."""
        if not required and args.get(xname) is None and args.get(yname) is None:
            return None
        w, h = self.screen_size()
        return _int(args, xname, None, 0, w - 1), _int(args, yname, None, 0, h - 1)

    def send_sync(self, events):
        self.dpy.send_many(events)
        self.dpy.sync()

    def reap(self):
        self.launched = [p for p in self.launched if p.poll() is None]


# ---------------------------------------------------------------- operations


def op_status(d, args):
    s = d.session
    data = {"ready": s.ready(), "state": s.state, "error": s.error, "display": f":{s.number}",
            "vnc_port": s.vnc_port, "width": s.width, "height": s.height}
    if s.ready():
        try:
            d.connect()
            data["width"], data["height"] = d.screen_size()
        except (XConnectionError, XError):
            d.drop()
    else:
        data["retry_after"] = s.retry_after()
    return data, b""


def op_screenshot(d, args):
    w, h = d.screen_size()
    region = args.get("region")
    if region is None:
        x, y, rw, rh = 0, 0, w, h
    else:
        if not isinstance(region, dict):
            raise bad("region must be an object {x, y, width, height}")
        x = _int(region, "x", None, 0, w - 1)
        y = _int(region, "y", None, 0, h - 1)
        rw = _int(region, "width", None, 1, w - x)
        rh = _int(region, "height", None, 1, h - y)
    return {"format": "png", "width": rw, "height": rh, "x": x, "y": y}, screen.capture(d.dpy, x, y, rw, rh)


def _button(args, default="left"):
    name = args.get("button", default)
    if name not in xtest.BUTTONS:
        raise bad(f"button must be one of {', '.join(xtest.BUTTONS)}")
    return xtest.BUTTONS[name]


def _cursor(d, want=None):
    """Where the pointer is. With `want`, waits a little until it is there:
    a client's synchronous grab (the window manager's click to focus) freezes
    the pointer until that client lets events go, so input the server has
    taken may move the pointer a moment later, on a busy machine later still."""
    deadline = time.monotonic() + POINTER_SETTLE_S
    while True:
        x, y, _mask = d.dpy.query_pointer()
        if want is None or (x, y) == tuple(want) or time.monotonic() >= deadline:
            return {"x": x, "y": y}
        time.sleep(0.01)


def op_move(d, args):
    x, y = d.point(args)
    d.send_sync([d.xtest.motion(x, y)])
    return {"cursor": _cursor(d, (x, y))}, b""


def op_click(d, args):
    at = d.point(args, required=False)
    button = _button(args)
    count = _int(args, "count", 1, 1, 3)
    events = [d.xtest.motion(*at)] if at else []
    for _ in range(count):
        events += [d.xtest.button(button, True), d.xtest.button(button, False)]
    d.send_sync(events)
    return {"cursor": _cursor(d, at)}, b""


def op_mouse_button(press):
    def op(d, args):
        at = d.point(args, required=False)
        events = [d.xtest.motion(*at)] if at else []
        d.send_sync(events + [d.xtest.button(_button(args), press)])
        return {"cursor": _cursor(d, at)}, b""
    return op


def op_drag(d, args):
    x0, y0 = d.point(args, "from_x", "from_y")
    x1, y1 = d.point(args, "to_x", "to_y")
    button = _button(args)
    d.send_sync([d.xtest.motion(x0, y0), d.xtest.button(button, True)])
    # Intermediate motion, a little apart in time: toolkits start a drag only after the pointer travels while pressed.
    for i in range(1, DRAG_STEPS + 1):
        time.sleep(DRAG_STEP_S)
        d.send_sync([d.xtest.motion(x0 + (x1 - x0) * i // DRAG_STEPS, y0 + (y1 - y0) * i // DRAG_STEPS)])
    d.send_sync([d.xtest.button(button, False)])
    return {"cursor": _cursor(d, (x1, y1))}, b""


def op_scroll(d, args):
    at = d.point(args, required=False)
    direction = args.get("direction", "down")
    if direction not in xtest.SCROLL_BUTTONS:
        raise bad(f"direction must be one of {', '.join(xtest.SCROLL_BUTTONS)}")
    amount = _int(args, "amount", 3, 1, MAX_SCROLL)
    button = xtest.SCROLL_BUTTONS[direction]
    events = [d.xtest.motion(*at)] if at else []
    for _ in range(amount):
        events += [d.xtest.button(button, True), d.xtest.button(button, False)]
    d.send_sync(events)
    return {"cursor": _cursor(d, at)}, b""


def op_type(d, args):
    text = args.get("text")
    if not isinstance(text, str):
        raise bad("text must be a string")
    if len(text) > MAX_TEXT:
        raise bad(f"text must be at most {MAX_TEXT} characters")
    delay = _int(args, "delay_ms", 0, 0, MAX_DELAY_MS)
    started = time.monotonic()
    presses = d.keyboard.type_text(text, delay / 1000)
    return {"characters": presses, "duration_ms": round((time.monotonic() - started) * 1000, 1)}, b""


def _combos(args):
    keys = args.get("keys")
    if keys is None:
        key = args.get("key")
        if not isinstance(key, str) or not key:
            raise bad("key must be a non-empty string such as \"ctrl+c\" or \"Return\"")
        # "ctrl+a Delete" is a sequence of two combinations, as xdotool reads it; " " alone is the space bar.
        return [key] if key.strip() == "" else key.split()
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise bad("keys must be a non-empty list of key names")
    return ["+".join(keys)]


def op_key(d, args):
    combos = _combos(args)
    if len(combos) > 64:
        raise bad("at most 64 key combinations per call")
    parsed = [d.keyboard.parse_combo(c) for c in combos]
    for syms in parsed:
        d.keyboard.press_combo(syms)
    return {"pressed": combos}, b""


def op_key_hold(press):
    def op(d, args):
        combos = _combos(args)
        syms = [s for c in combos for s in d.keyboard.parse_combo(c)]
        (d.keyboard.key_down if press else d.keyboard.key_up)(syms)
        return {"held": len(d.keyboard.held)}, b""
    return op


def op_cursor(d, args):
    return _cursor(d), b""


def op_windows(d, args):
    windows = d.windows.list(include_all=bool(args.get("all")))
    return {"windows": windows}, b""


def op_state(d, args):
    """What the events socket's desktop producers compare from one look to the next: the
    windows (focus included) and, when asked, the clipboard's text (without the text when
    its hash is `known_sha256`, the one the caller already has)."""
    data = {"windows": d.windows.list()}
    if not args.get("clipboard"):
        return data, b""
    if d.clipboard is None:
        d.clipboard = clipboard.Clipboard(d.dpy, d.windows.atom("CLIPBOARD"))
    clip = d.clipboard
    data["clipboard"] = None
    if not clip.owner():
        clip.remember(None)
        return data, b""
    if clip.must_read():
        # The owner answers xclip over X: give up the X lock meanwhile, as launch does.
        d.lock.release()
        try:
            clip.remember(clipboard.read(d.session.env))
        except clipboard.ClipboardUnavailable as e:
            data["clipboard_error"] = str(e)
        finally:
            d.lock.acquire()
    if clip.last is not None:
        data["clipboard"] = dict(clip.last)
        if clip.last["sha256"] == args.get("known_sha256"):
            del data["clipboard"]["text"]
    return data, b""


def op_focus(d, args):
    raw = args.get("window_id")
    try:
        window = int(raw, 0) if isinstance(raw, str) else int(raw)
        if isinstance(raw, bool) or window <= 0 or window > 0xFFFFFFFF:
            raise ValueError
    except (TypeError, ValueError):
        raise bad("window_id must be a window id from GET …/desktop/windows") from None
    focused = d.windows.focus(window)
    return {"window_id": str(window), "focused": focused}, b""


def _launch_argv(args):
    command = args.get("command")
    app = args.get("app") if args.get("app") is not None else args.get("app_name")
    if (command is None) == (app is None):
        raise bad("give either app (a name such as \"terminal\", \"browser\", \"files\", or an installed program) or command")
    text = command if command is not None else app
    if not isinstance(text, str) or not text.strip() or len(text) > 8192 or "\0" in text:
        raise bad("app/command must be a non-empty string")
    if command is not None:
        return ["/bin/sh", "-c", command]
    try:
        words = shlex.split(app)
    except ValueError as e:
        raise bad(f"cannot read app {app!r}: {e}") from None
    program = APP_ALIASES.get(words[0].lower(), words[0])
    if shutil.which(program, path=os.environ.get("PATH")) is None:
        raise ActionError("NOT_FOUND", f"no program {words[0]!r} on this computer; install it or pass a command")
    return [program] + APP_FLAGS.get(program, []) + words[1:]


def op_launch(d, args):
    argv = _launch_argv(args)
    wait_s = _int(args, "wait_for_window_s", 0, 0, LAUNCH_WAIT_MAX_S)
    before = set(d.windows.client_list())
    d.reap()
    proc = subprocess.Popen(argv, env=d.session.env, cwd=d.session.env["HOME"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    d.launched.append(proc)
    data = {"pid": proc.pid, "command": argv}
    if wait_s:
        deadline = time.monotonic() + wait_s
        # Give up the X lock between looks, so other calls go on while the app starts.
        d.lock.release()
        try:
            while time.monotonic() < deadline:
                with d.lock:
                    found = d.windows.new_window(before, proc.pid)
                    if found:
                        data["window"] = found
                        break
                time.sleep(0.1)
        finally:
            d.lock.acquire()
    return data, b""


OPS = {
    "status": op_status,
    "screenshot": op_screenshot,
    "move": op_move,
    "click": op_click,
    "mouse_down": op_mouse_button(True),
    "mouse_up": op_mouse_button(False),
    "drag": op_drag,
    "scroll": op_scroll,
    "type": op_type,
    "key": op_key,
    "key_down": op_key_hold(True),
    "key_up": op_key_hold(False),
    "cursor": op_cursor,
    "windows": op_windows,
    "state": op_state,
    "focus": op_focus,
    "launch": op_launch,
}

__all__ = ["Desktop", "ActionError", "OPS", "keysyms"]
