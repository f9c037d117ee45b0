"""Ops watch and unwatch: what happens inside the computer, as events for the
host connection that asked, until it unwatches or goes away.

Producers (each optional in a watch):
  process  process.started / process.exited, from a scan of /proc every
           SCAN_S (a process that lives shorter than that may be missed);
           exit codes where the guest reaped the process itself. A process
           that replaces its program (exec) is started again: same pid, its
           new command line, `exec: true`.
  file     file.created / file.modified / file.deleted under the watch's
           paths (inotify, recursive, at most MAX_DIRS directories).
  idle     idle.started once nothing happened for `threshold_s` seconds,
           idle.ended when something does again. Something happening is a
           request that does work (exec, spawn, stdin, files) or the
           computer's processes using more than ACTIVE_CPU of a CPU.

Events are {type, data, timestamp} (ISO 8601 UTC with milliseconds), sent
in batches at most every FLUSH_S (the first event after a quiet spell goes
at once, with whatever came in the same turn of the loop): repeated
modifications of one path within a batch are one event, and past MAX_BATCH events a batch ends with events.dropped
{count} instead of the rest, so a storm never floods the host.
"""

import datetime
import os
import time

from .common import GuestError
from .inotify import TreeWatch, Unavailable

FLUSH_S = 0.03
SCAN_S = 0.25
IDLE_TICK_S = 1.0
ACTIVE_CPU = 0.05
MAX_BATCH = 200
MAX_DIRS = 8192
MAX_WATCHES = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def comm_of(pid):
    """The program name the kernel shows for a process (it changes when the process execs), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.find(b"(") + 1:stat.rfind(b")")]


def read_proc(pid):
    """(ppid, cmd, uid, comm) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    comm = stat[stat.find(b"(") + 1:stat.rfind(b")")]
    text = cmd.replace(b"\0", b" ").strip() or b"[" + comm + b"]"
    return int(fields[1]), text[:1024].decode("utf-8", "replace"), uid, comm


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class Watch:
    def __init__(self, guest, conn, watch_id):
        self.guest = guest
        self.conn = conn
        self.id = watch_id
        self.pending = []
        self.modified = set()
        self.dropped = 0
        self.flush_handle = None
        self.flushed_at = 0.0  # loop time of the last flush
        self.tree = None
        self.process = False
        self.idle = None  # {"threshold": s, "idle": bool, "since": monotonic}

    def emit(self, type_, data):
        if self.conn.transport is None or self.conn.transport.is_closing():
            self.guest.watches.stop(self.id)
            return
        if type_ == "file.modified":
            if data["path"] in self.modified:
                return
            self.modified.add(data["path"])
        if len(self.pending) >= MAX_BATCH:
            self.dropped += 1
        else:
            self.pending.append({"type": type_, "data": data, "timestamp": now_iso()})
        if self.flush_handle is None:
            wait = self.flushed_at + FLUSH_S - self.guest.loop.time()
            self.flush_handle = self.guest.loop.call_later(max(0.0, wait), self.flush)

    def flush(self):
        self.flush_handle = None
        self.flushed_at = self.guest.loop.time()
        events, self.pending = self.pending, []
        self.modified.clear()
        if self.dropped:
            events.append({"type": "events.dropped", "data": {"count": self.dropped}, "timestamp": now_iso()})
            self.dropped = 0
        if events:
            self.conn.send_event({"ev": "watch", "watch": self.id, "events": events})

    def on_files(self):
        for kind, path, is_dir in self.tree.events():
            if kind == "overflow":
                self.emit("file.overflow", {"message": "some file events were lost: too many at once"})
            else:
                self.emit(f"file.{kind}", {"path": path, "is_dir": is_dir})

    def close(self):
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush()
        if self.tree is not None:
            self.guest.loop.remove_reader(self.tree.fd)
            self.tree.close()


class Watches:
    """The guest's watches and the one /proc scanner they share."""

    def __init__(self, guest):
        self.guest = guest
        self.by_id = {}
        self.procs = None  # pid -> (ppid, cmd, uid)
        self.scan_handle = None
        self.idle_handle = None
        self.cpu = {}
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------ lifecycle

    def start(self, conn, watch_id, req):
        if watch_id in self.by_id:
            self.stop(watch_id)
        if len(self.by_id) >= MAX_WATCHES:
            raise GuestError("BUSY", f"at most {MAX_WATCHES} watches at once")
        w = Watch(self.guest, conn, watch_id)
        unavailable = []
        if req.get("file") is not None:
            paths = req["file"].get("paths") or []
            if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
                raise GuestError("BAD_REQUEST", "file.paths must be absolute paths")
            try:
                w.tree = TreeWatch(paths, MAX_DIRS)
            except Unavailable as e:
                unavailable.append({"producer": "file", "reason": str(e)})
            else:
                self.guest.loop.add_reader(w.tree.fd, w.on_files)
                for p in w.tree.missing:
                    unavailable.append({"producer": "file", "reason": f"{p} is not a directory; it is not watched"})
                if w.tree.capped:
                    unavailable.append({"producer": "file", "reason": f"only the first {MAX_DIRS} directories are watched"})
        if req.get("process") is not None:
            w.process = True
        if req.get("idle") is not None:
            threshold = req["idle"].get("threshold_s")
            if not isinstance(threshold, (int, float)) or not 1 <= threshold <= 86400:
                raise GuestError("BAD_REQUEST", "idle.threshold_s must be 1 to 86400")
            w.idle = {"threshold": threshold, "idle": False, "since": time.monotonic()}
        self.by_id[watch_id] = w
        self._schedule()
        return {"unavailable": unavailable}

    def stop(self, watch_id):
        w = self.by_id.pop(watch_id, None)
        if w is not None:
            w.close()
        if not any(x.process or x.idle for x in self.by_id.values()):
            self.procs = None
            self.cpu = {}

    def drop_connection(self, conn):
        for watch_id in [i for i, w in self.by_id.items() if w.conn is conn]:
            self.stop(watch_id)

    def activity(self):
        """A request that does work: for idle watches, the computer is in use."""
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------ the scanner

    def _schedule(self):
        if self.scan_handle is None and any(w.process for w in self.by_id.values()):
            self.scan_handle = self.guest.loop.call_soon(self._scan)
        if self.idle_handle is None and any(w.idle for w in self.by_id.values()):
            self.cpu = self._cpu_now()
            self.idle_handle = self.guest.loop.call_later(IDLE_TICK_S, self._idle_tick)

    @staticmethod
    def _pids():
        own = os.getpid()
        return {int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != own}

    def _prune(self):
        """Ends the watches whose connection has gone (nobody would read their events)."""
        for watch_id, w in list(self.by_id.items()):
            if w.conn.transport is None or w.conn.transport.is_closing():
                self.stop(watch_id)

    def _scan(self):
        self.scan_handle = None
        self._prune()
        watchers = [w for w in self.by_id.values() if w.process]
        if not watchers:
            return
        pids = self._pids()
        if self.procs is None:
            # The first scan is the baseline: what runs already is not news.
            self.procs = {p: info for p in pids if (info := read_proc(p))}
        else:
            for pid in sorted(pids):
                known = self.procs.get(pid)
                if known is not None and comm_of(pid) in (known[3], None):
                    continue
                info = read_proc(pid)
                if info is None:
                    continue
                self.procs[pid] = info
                if known is None:
                    self.guest.reaper.recent_exits.pop(pid, None)  # an exit code of an earlier process with this pid
                data = {"pid": pid, "ppid": info[0], "cmd": info[1], "uid": info[2]}
                if known is not None:
                    data["exec"] = True
                for w in watchers:
                    w.emit("process.started", data)
            for pid in sorted(self.procs.keys() - pids):
                _ppid, cmd, uid, _comm = self.procs.pop(pid)
                code = self.guest.reaper.recent_exits.pop(pid, None)
                for w in watchers:
                    w.emit("process.exited", {"pid": pid, "cmd": cmd, "uid": uid, "exit_code": code})
        self.scan_handle = self.guest.loop.call_later(SCAN_S, self._scan)

    def _cpu_now(self):
        return {p: cpu_ticks(p) for p in self._pids()}

    def _idle_tick(self):
        self.idle_handle = None
        self._prune()
        watchers = [w for w in self.by_id.values() if w.idle]
        if not watchers:
            return
        now = time.monotonic()
        cpu = self._cpu_now()
        used = sum(t - self.cpu.get(p, 0) for p, t in cpu.items() if t >= self.cpu.get(p, 0)) / CLK_TCK
        self.cpu = cpu
        busy = used > ACTIVE_CPU * IDLE_TICK_S or now - self.last_activity < IDLE_TICK_S
        for w in watchers:
            s = w.idle
            if busy:
                if s["idle"]:
                    w.emit("idle.ended", {"idle_seconds": round(now - s["since"], 1)})
                s["idle"] = False
                s["since"] = now
            elif not s["idle"] and now - s["since"] >= s["threshold"]:
                s["idle"] = True
                w.emit("idle.started", {"idle_seconds": round(now - s["since"], 1), "threshold_seconds": s["threshold"]})
        self.idle_handle = self.guest.loop.call_later(IDLE_TICK_S, self._idle_tick)


def watches_of(guest):
    w = getattr(guest, "watches", None)
    if w is None:
        w = guest.watches = Watches(guest)
    return w


def handle_watch(guest, conn, req_id, req, payload):
    watch_id = req["watch"]
    if not isinstance(watch_id, str) or not 0 < len(watch_id) <= 64:
        raise GuestError("BAD_REQUEST", "watch must be an id")
    conn.reply(req_id, watches_of(guest).start(conn, watch_id, req))


def handle_unwatch(guest, conn, req_id, req, payload):
    watches_of(guest).stop(req["watch"])
    conn.reply(req_id, {})


HANDLERS = {"watch": handle_watch, "unwatch": handle_unwatch}
