"""The desktop session: the X server with its VNC server (TigerVNC's Xvnc) and the desktop environment, kept running.

Xvnc is one process that is both the X server at the computer's resolution
and a VNC server on 127.0.0.1 inside the computer (no password: only this
computer's own processes reach it, and the API's relay is the way in from
outside). The desktop environment is Xfce. Both run as the daemon's user,
in the computer's cgroup like everything else. When either exits it is
started again (with backoff); a desktop left by an earlier daemon is adopted.
"""

import os
import secrets
import subprocess
import threading
import time

from . import xauth
from .xwire import XConnectionError, display_answers, socket_path

XVNC_START_TIMEOUT_S = 15.0
# Ready once the window manager and the panel are up, or this long after the session started regardless.
WM_WAIT_S = 20.0
PANEL_WAIT_S = 8.0
# After the panel and the desktop appear, the time they take to paint.
SETTLE_S = 0.7
MAX_BACKOFF_S = 30.0
# A desktop session that exits sooner than this after its start is restarted with backoff.
SHORT_SESSION_S = 10.0


def log(*parts):
    print(time.strftime("%H:%M:%S"), "hangar-desktop:", *parts, flush=True)


def user_env(display_number):
    """The environment of the desktop and of apps launched on it: the daemon's own (the computer's env vars) plus X's."""
    env = dict(os.environ)
    home = env.get("HOME") or os.path.expanduser("~")
    runtime = f"/tmp/runtime-{os.getuid()}"
    try:
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        os.chmod(runtime, 0o700)
    except OSError:
        pass
    env.update({
        "HOME": home,
        "DISPLAY": f":{display_number}",
        "XAUTHORITY": os.path.join(home, ".Xauthority"),
        "XDG_RUNTIME_DIR": runtime,
        "XDG_SESSION_TYPE": "x11",
        "XDG_CURRENT_DESKTOP": "XFCE",
        "LANG": env.get("LANG", "C.UTF-8"),
    })
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    return env


def processes_named(name):
    """Pids of this user's processes whose command name is `name`."""
    me = os.getuid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            if comm == name and os.stat(f"/proc/{entry}").st_uid == me:
                out.append(int(entry))
        except OSError:
            continue
    return out


class Session:
    def __init__(self, width, height, display_number=0, vnc_port=5900, name="hangar"):
        self.width = width
        self.height = height
        self.number = display_number
        self.vnc_port = vnc_port
        self.name = name
        self.env = user_env(display_number)
        self.authority = self.env["XAUTHORITY"]
        self.xvnc = None
        self.desktop = None
        self.session_started = None
        self.desktop_backoff = 1.0
        self.desktop_due = 0.0
        self.ready_event = threading.Event()
        self.state = "starting"
        self.error = None
        # Set by the daemon: a callable answering (window manager announced, panel mapped, desktop mapped),
        # and one run every second or so for its upkeep.
        self.desktop_check = None
        self.tidy = None
        self.wm_seen = None
        self.shell_seen = None
        self._stop = threading.Event()
        self._thread = None

    # ------------------------------------------------------------ lifecycle

    def start(self):
        self._thread = threading.Thread(target=self._supervise, name="session", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        for proc in (self.desktop, self.xvnc):
            if proc and proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                except OSError:
                    pass

    def ready(self):
        return self.ready_event.is_set()

    def _supervise(self):
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._ensure_x()
                self._ensure_desktop()
                self._check_ready()
                if self.tidy and self.ready_event.is_set():
                    self.tidy()
                backoff = 1.0
                self.error = None
                # Look often while the desktop comes up, so callers wait no longer than it takes.
                self._stop.wait(1.0 if self.ready_event.is_set() else 0.2)
            except Exception as e:  # keep supervising whatever went wrong; say what it was
                self.error = str(e)
                self.state = "error"
                self.ready_event.clear()
                log(f"desktop not up: {e}; trying again in {backoff:.0f} s")
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    # ------------------------------------------------------------ the X server

    def _ensure_x(self):
        if self.xvnc is not None and self.xvnc.poll() is None:
            return
        if self.xvnc is not None:
            log(f"Xvnc exited with {self.xvnc.returncode}; starting it again")
            self.xvnc = None
        if display_answers(self.number, self.authority):
            return  # a desktop left by an earlier daemon: adopt it
        self.ready_event.clear()
        self.wm_seen = self.shell_seen = None
        self.state = "starting"
        self._remove_stale_display()
        cookie = secrets.token_bytes(16)
        xauth.write_cookie(self.authority, self.number, cookie)
        args = [
            "Xvnc", f":{self.number}",
            "-geometry", f"{self.width}x{self.height}", "-depth", "24",
            "-rfbport", str(self.vnc_port), "-localhost", "-SecurityTypes", "None",
            "-auth", self.authority, "-nolisten", "tcp",
            "-AlwaysShared", "-DisconnectClients=0", "-AcceptSetDesktopSize=0",
            "-desktop", self.name, "-s", "0",
        ]
        log("starting", " ".join(args))
        self.xvnc = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + XVNC_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.xvnc.poll() is not None:
                raise RuntimeError(f"Xvnc exited at once with code {self.xvnc.returncode}")
            if display_answers(self.number, self.authority):
                return
            time.sleep(0.05)
        raise RuntimeError(f"Xvnc did not open display :{self.number} within {XVNC_START_TIMEOUT_S:.0f} s")

    def _remove_stale_display(self):
        """Lock file and socket of an X server that died with the computer's last boot (its pid may now be anyone's)."""
        for path in (f"/tmp/.X{self.number}-lock", socket_path(self.number)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RuntimeError(f"cannot remove the stale {path}: {e}") from e
        os.makedirs("/tmp/.X11-unix", mode=0o1777, exist_ok=True)

    # ------------------------------------------------------------ the desktop environment

    def _ensure_desktop(self):
        if self.desktop is not None and self.desktop.poll() is None:
            return
        if self.desktop is not None:
            # A session that dies soon after it started is not started again at once (it would spin).
            short = time.monotonic() - (self.session_started or 0) < SHORT_SESSION_S
            self.desktop_backoff = min(MAX_BACKOFF_S, self.desktop_backoff * 2) if short else 1.0
            self.desktop_due = time.monotonic() + (self.desktop_backoff if short else 0)
            log(f"the desktop session exited with {self.desktop.returncode}; starting it again" + (f" in {self.desktop_backoff:.0f} s" if short else ""))
            self.desktop = None
            self.wm_seen = self.shell_seen = None
        if time.monotonic() < self.desktop_due:
            return
        elif processes_named("xfce4-session"):
            if self.session_started is None:
                self.session_started = time.monotonic()
            return  # adopted along with the X server
        log("starting the Xfce session")
        self.desktop = subprocess.Popen(
            ["dbus-launch", "--exit-with-session", "xfce4-session"],
            env=self.env, cwd=self.env["HOME"], stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.session_started = time.monotonic()

    def _check_ready(self):
        if self.ready_event.is_set():
            return
        now = time.monotonic()
        started = self.session_started or now
        wm = shell = False
        try:
            if self.desktop_check:
                wm, panel, background = self.desktop_check()
                shell = panel and background
        except (XConnectionError, OSError):
            pass
        if wm and self.wm_seen is None:
            self.wm_seen = now
        if shell and self.shell_seen is None:
            self.shell_seen = now
        # Up a moment after the window manager, panel and desktop are (they draw themselves then);
        # a session without a panel or desktop a little after its window manager; any session after WM_WAIT_S.
        drawn = self.shell_seen is not None and now - self.shell_seen >= SETTLE_S
        if drawn or (wm and now - self.wm_seen > PANEL_WAIT_S) or now - started > WM_WAIT_S:
            self.state = "ready"
            self.ready_event.set()
            log(f"desktop ready ({self.width}x{self.height} on :{self.number}, VNC on 127.0.0.1:{self.vnc_port})")

    def retry_after(self):
        """Seconds a client should wait before asking again while the desktop starts."""
        if self.session_started is None:
            return 3
        left = WM_WAIT_S - (time.monotonic() - self.session_started)
        return max(1, min(5, int(left) + 1))
