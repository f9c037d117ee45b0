"""Op file_open: a file's bytes as a relayed stream (the `tcp_*` family's flow
control, schema/guest.ts FileStream). The stream's far end is a thread that
copies between the file and one end of a socket pair, as `user` (as root
where `user` is refused); the other end is a connection of the tcp module, so
tcp_send / tcp_ack / tcp_shutdown / tcp_close and the tcp_data / tcp_end /
tcp_closed events work as they do for a port.

  read    the file from `offset`, at most `length` bytes, then end
  write   the stream's bytes into the file (parents created); the file is
          replaced only once the host ends the stream cleanly, then one JSON
          line answers {"ok": true, "path", "size"} (or {"ok": false, "code",
          "message"}), so an upload cut halfway changes nothing
  pack    a directory (or a file) as a tar.gz archive
  unpack  a tar, tar.gz or zip archive into a directory, checked member by
          member (no absolute paths, no `..`, no links out, no devices),
          unpacked beside it first and moved in only when whole; answers
          with a JSON line like write

A read that fails halfway ends the stream with an error (tcp_closed), so a
cut download is never taken for a whole one.
"""

import errno
import io
import json
import os
import shutil
import socket
import stat
import tarfile
import threading
import uuid
import zipfile

from .common import GuestError, log
from .files import fs_error, resolve
from .fsident import take_identity
from .tcp import MAX_CONNS, TcpConn, conns

CHUNK = 256 * 1024
MAX_STREAMS = 64
_active = [0]


class FileConn(TcpConn):
    """A tcp connection whose other end is a thread in this process (a socket pair, not TCP)."""

    # Set before the socket closes when the host broke the stream off (a reset): the thread then
    # reads an end like any other and must not take it for the end of an upload.
    aborted = False

    def connection_made(self, transport):
        self.transport = transport

    def close(self, reset):
        if reset:
            self.aborted = True
        super().close(reset)

    def connection_lost(self, exc):
        if exc is not None:
            self.aborted = True
        super().connection_lost(exc)

    def fail(self, message):
        """Ends the stream with an error the host sees (a cut read is not a whole file)."""
        if self.closed:
            return
        self.closed = True
        conns(self.owner).pop(self.id, None)
        self.owner.send_event({"ev": "tcp_closed", "conn": self.id, "error": message})
        self.transport.abort()


def _answer(sock, result):
    try:
        sock.sendall((json.dumps(result) + "\n").encode())
    except OSError:
        pass


def _failure(e, path):
    if isinstance(e, OSError):
        err = fs_error(e, e.filename if isinstance(e.filename, str) else path)
        return {"ok": False, "code": err.code, "message": str(err)}
    return {"ok": False, "code": "BAD_REQUEST", "message": str(e)}


def _drain(sock):
    """Reads the host's side until it ends (what a read stream does with any bytes sent to it)."""
    while sock.recv(CHUNK):
        pass


# ------------------------------------------------------------------ the copies (in the stream's thread)


def open_read(path):
    f = open(path, "rb")
    if stat.S_ISDIR(os.fstat(f.fileno()).st_mode):
        f.close()
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    return f


def do_read(sock, f, offset, length):
    with f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            sock.sendall(chunk)
            if left is not None:
                left -= len(chunk)
    sock.shutdown(socket.SHUT_WR)
    _drain(sock)


def open_write(path):
    """Creates the file's temporary twin beside it (parents too): where `user` may not, root does."""
    parent = os.path.dirname(path) or "/"
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.hangar-{uuid.uuid4().hex[:8]}")
    return open(tmp, "xb"), tmp


class BrokenOff(Exception):
    """The host reset the stream: what came was not the whole of it."""


def do_write(sock, opened, path, mode, proto):
    f, tmp = opened
    try:
        size = 0
        with f:
            while True:
                chunk = sock.recv(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                size += len(chunk)
        if proto.aborted:
            raise BrokenOff()
        try:
            keep = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            keep = 0o644 if mode is None else mode
        os.chmod(tmp, keep if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return {"ok": True, "path": path, "size": size}


def do_pack(sock, path):
    os.lstat(path)
    with sock.makefile("wb") as out, tarfile.open(fileobj=out, mode="w|gz") as tar:
        tar.add(path, arcname=os.path.basename(path.rstrip("/")) or ".", recursive=True)
    sock.shutdown(socket.SHUT_WR)
    _drain(sock)


def _safe_member(name, dest, is_link=False, target=None):
    """The destination of an archive member, or an error for one that would land outside `dest`."""
    if name.startswith("/") or "\0" in name:
        raise ValueError(f"archive member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"archive member {name!r} goes out of the directory")
    if is_link and target is not None:
        base = os.path.dirname("/".join(parts))
        resolved = os.path.normpath(os.path.join("/", base, target))
        if target.startswith("/") or resolved.startswith("/..") or ".." in resolved.split("/"):
            raise ValueError(f"archive member {name!r} links out of the directory")
    return os.path.join(dest, *parts)


def _unpack_tar(fileobj, staging):
    entries = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for m in tar:
            target = m.linkname if (m.issym() or m.islnk()) else None
            if m.islnk():
                _safe_member(m.linkname, staging)
            out = _safe_member(m.name, staging, m.issym(), target)
            if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
                raise ValueError(f"archive member {m.name!r} is a device or a fifo")
            m.mode &= 0o777  # no setuid bits from an archive
            m.uid = m.gid = None
            m.uname = m.gname = ""
            if m.isdir():
                os.makedirs(out, exist_ok=True)
            elif m.isreg():
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with tar.extractfile(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                os.chmod(out, m.mode or 0o644)
            elif m.issym():
                os.makedirs(os.path.dirname(out), exist_ok=True)
                os.symlink(m.linkname, out)
            else:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                os.link(_safe_member(m.linkname, staging), out)
            entries += 1
    return entries


def _unpack_zip(path, staging):
    entries = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            out = _safe_member(info.filename, staging)
            if info.is_dir():
                os.makedirs(out, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                perm = (info.external_attr >> 16) & 0o777
                if perm:
                    os.chmod(out, perm)
            entries += 1
    return entries


def _merge(src, dest):
    """Moves everything in `src` into `dest`, replacing files and merging directories."""
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dest, name)
        if os.path.isdir(s) and not os.path.islink(s) and os.path.isdir(d) and not os.path.islink(d):
            _merge(s, d)
        else:
            if os.path.isdir(d) and not os.path.islink(d):
                shutil.rmtree(d)
            os.replace(s, d)


class _Sniffed(io.RawIOBase):
    """A source's bytes (read(n) -> bytes) with the first few put back after a look at them."""

    def __init__(self, head, read):
        self.head = head
        self.read_more = read

    def readable(self):
        return True

    def readinto(self, buf):
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.read_more(len(buf))
        buf[: len(data)] = data
        return len(data)


def unpack_file(dest, source, fmt):
    """Unpacks an archive that is a file in the computer (op fs unpack: an upload staged there)."""
    with open(source, "rb") as f:
        staging = open_unpack(dest)
        return do_unpack(f.read, staging, dest, fmt)


def open_unpack(dest):
    """Makes the directory (and a staging directory in it) the archive goes to."""
    os.makedirs(dest, exist_ok=True)
    staging = os.path.join(dest, f".hangar-unpack-{uuid.uuid4().hex[:8]}")
    os.mkdir(staging, 0o700)
    return staging


def do_unpack(read, staging, dest, fmt, aborted=lambda: False):
    """Unpacks what `read(n)` gives (b"" at its end) into `dest` through `staging` (removed after)."""
    try:
        head = b""
        while len(head) < 4:
            chunk = read(4 - len(head))
            if not chunk:
                break
            head += chunk
        body = os.path.join(staging, "content")
        os.mkdir(body)
        if fmt == "zip" or (fmt == "auto" and head.startswith(b"PK")):
            spool = os.path.join(staging, ".archive.zip")
            with open(spool, "wb") as f:
                f.write(head)
                while True:
                    chunk = read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
            if aborted():
                raise BrokenOff()
            entries = _unpack_zip(spool, body)
        else:
            entries = _unpack_tar(io.BufferedReader(_Sniffed(head, read), CHUNK), body)
            while read(CHUNK):
                pass
        if aborted():
            raise BrokenOff()
        _merge(body, dest)
    except tarfile.TarError as e:
        raise ValueError(f"not a readable tar archive: {e}") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"not a readable zip archive: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"ok": True, "path": dest, "entries": entries}


# ------------------------------------------------------------------ the op


def _run(loop, proto, sock, guest, req, path):
    """The stream's thread: opens as user (as root where user is refused, decided before any byte
    moves), copies with that identity, and ends the stream. A pack reads as root: it archives
    whatever the directory holds."""
    op = req["op"]
    runner = guest.runner
    prepare = {"read": open_read, "write": open_write, "pack": os.lstat, "unpack": open_unpack}[op]

    def opened_as(who):
        take_identity(runner.identity.resolve(who))
        return prepare(path)

    try:
        if op == "pack":
            opened = opened_as("root")
        else:
            try:
                opened = opened_as("user")
            except PermissionError:
                opened = opened_as("root")
        if op == "read":
            result = do_read(sock, opened, int(req.get("offset") or 0), req.get("length"))
        elif op == "write":
            result = do_write(sock, opened, path, req.get("mode"), proto)
        elif op == "pack":
            result = do_pack(sock, path)
        else:
            result = do_unpack(sock.recv, opened, path, req.get("format") or "auto", lambda: proto.aborted)
        if result is not None:
            _answer(sock, result)
            sock.shutdown(socket.SHUT_WR)
            _drain(sock)
    except BrokenOff:
        pass  # nothing was changed; nobody is left to tell
    except (OSError, ValueError, EOFError, tarfile.TarError) as e:
        failure = _failure(e, path)
        if op in ("write", "unpack"):
            # Said at once (the host stops sending), then whatever still comes is read and dropped.
            _answer(sock, failure)
            try:
                sock.shutdown(socket.SHUT_WR)
                _drain(sock)
            except OSError:
                pass
        else:
            loop.call_soon_threadsafe(proto.fail, failure["message"])
    except Exception as e:  # noqa: BLE001 - the thread must end the stream whatever happened
        log(f"file stream {op} {path} failed: {e!r}")
        loop.call_soon_threadsafe(proto.fail, f"{op} failed")
    finally:
        take_identity(runner.identity.resolve("root"))
        try:
            sock.close()
        except OSError:
            pass
        _active[0] -= 1


def handle_file_open(guest, conn, req_id, req, payload):
    conn_id = req["conn"]
    window = int(req["window"])
    request = req["request"]
    if not isinstance(request, dict) or request.get("op") not in ("read", "write", "pack", "unpack"):
        raise GuestError("BAD_REQUEST", "request.op must be read, write, pack or unpack")
    path = resolve(guest, request.get("path"))
    table = conns(conn)
    if conn_id in table:
        raise GuestError("BAD_REQUEST", f"connection {conn_id} exists")
    if len(table) >= MAX_CONNS or _active[0] >= MAX_STREAMS:
        raise GuestError("BUSY", "too many file streams at once")
    ours, theirs = socket.socketpair()
    _active[0] += 1

    async def start():
        try:
            _, proto = await guest.loop.create_connection(lambda: FileConn(conn, conn_id, window), sock=ours)
        except OSError as e:
            _active[0] -= 1
            theirs.close()
            return conn.reply_error(req_id, "FAILED", f"file stream: {e}")
        table[conn_id] = proto
        theirs.setblocking(True)
        threading.Thread(target=_run, args=(guest.loop, proto, theirs, guest, request, path), name=f"file-{conn_id}", daemon=True).start()
        conn.reply(req_id, {})

    guest.loop.create_task(start())


HANDLERS = {"file_open": handle_file_open}
