"""Op fs: files of the computer as the API's files routes need them.

Paths are the computer's own: the guest lives in the computer's root, so
whatever a path says (`..`, symlinks) it resolves inside. A relative path (and
`~`) is taken from `user`'s home. Every operation runs as `user`; when `user`
is refused (EACCES, EPERM) it runs again as root — the caller owns the
computer and has sudo in it — so what it creates then belongs to root. A path
even root may not change (a read-only mount such as /proc/sys) is FORBIDDEN.

Errors carry codes the host maps onto HTTP: NO_SUCH_PATH (404), FORBIDDEN
(403), CONFLICT (409: a directory where a file is expected, or the reverse,
an existing path, a directory that is not empty), NO_SPACE (507), BAD_REQUEST.
"""

import errno
import os
import shutil
import stat

from .common import GuestError
from .fsident import FileWorkers

MAX_PATH = 4096
# A listing reply stays well under what one host message may carry (1 MiB).
LIST_BUDGET = 512 * 1024

_CODES = {
    errno.ENOENT: "NO_SUCH_PATH",
    errno.EACCES: "FORBIDDEN",
    errno.EPERM: "FORBIDDEN",
    errno.EROFS: "FORBIDDEN",
    errno.EISDIR: "CONFLICT",
    errno.ENOTDIR: "CONFLICT",
    errno.EEXIST: "CONFLICT",
    errno.ENOTEMPTY: "CONFLICT",
    errno.EXDEV: "CONFLICT",
    errno.ELOOP: "CONFLICT",
    errno.ENOSPC: "NO_SPACE",
    errno.EDQUOT: "NO_SPACE",
    errno.ENAMETOOLONG: "BAD_REQUEST",
    errno.EINVAL: "BAD_REQUEST",
}


def fs_error(e, path):
    """A GuestError for an OSError on `path`, with the code the host maps to HTTP."""
    code = _CODES.get(e.errno, "FAILED")
    text = e.strerror or (os.strerror(e.errno) if e.errno else str(e))
    return GuestError(code, f"{text}: {path}")


def home_of(guest):
    return guest.runner.identity.resolve("user")["home"]


def resolve(guest, raw):
    """The absolute path a request names (relative ones and `~` from user's home)."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_PATH or "\0" in raw:
        raise GuestError("BAD_REQUEST", "a path is 1 to 4096 characters without NUL")
    if raw == "~" or raw.startswith("~/"):
        raw = home_of(guest) + raw[1:]
    if not raw.startswith("/"):
        raw = os.path.join(home_of(guest), raw)
    return raw


def stat_of(path, st, target=None):
    """What stat answers, from an lstat result (mode keeps its file-type bits)."""
    out = {
        "path": path,
        "size": st.st_size,
        "mode": st.st_mode,
        "is_dir": stat.S_ISDIR(st.st_mode),
        "is_symlink": stat.S_ISLNK(st.st_mode),
        "modified_at": st.st_mtime,
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    if target is not None:
        out["symlink_target"] = target
    return out


def entry_of(directory, entry):
    """One listing entry: a symlink to a directory counts as a directory (it can be entered)."""
    path = os.path.join(directory, entry.name)
    st = entry.stat(follow_symlinks=False)
    is_link = stat.S_ISLNK(st.st_mode)
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_link:
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
    return {"name": entry.name, "path": path, "size": st.st_size, "mode": st.st_mode, "is_dir": is_dir, "is_symlink": is_link, "modified_at": st.st_mtime}


# ----------------------------------------------------------- the operations (run in worker threads)


def do_stat(path, follow=False):
    st = os.stat(path) if follow else os.lstat(path)
    return stat_of(path, st, os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)


def do_list(path, after):
    """Entries sorted by name, after `after`, as many as fit the budget; `truncated` says more follow."""
    with os.scandir(path) as it:
        names = sorted((e for e in it), key=lambda e: e.name)
    entries, used, truncated = [], 0, False
    for e in names:
        if after is not None and e.name <= after:
            continue
        try:
            item = entry_of(path, e)
        except FileNotFoundError:
            continue  # gone while we listed
        used += len(item["name"]) + len(item["path"]) + 120
        if used > LIST_BUDGET:
            truncated = True
            break
        entries.append(item)
    return {"path": path, "entries": entries, "truncated": truncated}


def do_mkdir(path, recursive, mode):
    if recursive:
        os.makedirs(path, mode=mode, exist_ok=True)
        if not os.path.isdir(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    else:
        os.mkdir(path, mode)
    os.chmod(path, mode)  # the mode asked for, whatever the umask
    return do_stat(path)


def do_rename(src, dst):
    os.lstat(src)
    os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.move(src, dst)  # another filesystem: copy, then remove
    return do_stat(dst)


def do_copy(src, dst, recursive):
    st = os.lstat(src)
    os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            raise IsADirectoryError(errno.EISDIR, "is a directory (copy it with recursive: true)", src)
        inner = os.path.realpath(dst)
        outer = os.path.realpath(src)
        if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
            raise OSError(errno.EINVAL, "cannot copy a directory into itself", dst)
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    elif stat.S_ISLNK(st.st_mode):
        if os.path.lexists(dst):
            os.unlink(dst)
        os.symlink(os.readlink(src), dst)
    else:
        if os.path.isdir(dst):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dst)
        shutil.copy2(src, dst)
    return do_stat(dst)


def do_chmod(path, mode):
    os.chmod(path, mode)
    return do_stat(path)


def do_delete(path, recursive):
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        if recursive:
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return {"path": path, "deleted": True}


# --------------------------------------------------------------------------------- handlers


def _mode(raw, default):
    if raw is None:
        return default
    if not isinstance(raw, int) or not 0 <= raw <= 0o7777:
        raise GuestError("BAD_REQUEST", "mode must be permission bits (0 to 0o7777)")
    return raw


def run(guest, conn, req_id, fn, args, path):
    """Runs fn as `user`, again as root when `user` is refused; replies with its result or the error."""
    workers = files_of(guest)

    async def go():
        try:
            try:
                result = await workers.submit("user", fn, *args)
            except (PermissionError, shutil.Error):
                # A copy gathers its per-file failures into one shutil.Error: those were refusals too.
                result = await workers.submit("root", fn, *args)
        except OSError as e:
            err = fs_error(e, e.filename if isinstance(e.filename, str) else path)
            conn.reply_error(req_id, err.code, str(err))
            return
        except shutil.Error as e:
            conn.reply_error(req_id, "FAILED", f"copying {path} failed for some files: {len(e.args[0]) if e.args else 0} errors")
            return
        conn.reply(req_id, result)

    guest.loop.create_task(go())


def files_of(guest):
    workers = getattr(guest, "files", None)
    if workers is None:
        workers = guest.files = FileWorkers(guest.loop, guest.runner.identity)
    return workers


def handle_stat(guest, conn, req_id, req, payload):
    path = resolve(guest, req["path"])
    run(guest, conn, req_id, do_stat, (path, bool(req.get("follow"))), path)


def handle_list(guest, conn, req_id, req, payload):
    path = resolve(guest, req["path"])
    after = req.get("after")
    if after is not None and not isinstance(after, str):
        raise GuestError("BAD_REQUEST", "after must be a name")
    run(guest, conn, req_id, do_list, (path, after), path)


def handle_mkdir(guest, conn, req_id, req, payload):
    path = resolve(guest, req["path"])
    run(guest, conn, req_id, do_mkdir, (path, bool(req.get("recursive", True)), _mode(req.get("mode"), 0o755)), path)


def handle_rename(guest, conn, req_id, req, payload):
    src, dst = resolve(guest, req["from"]), resolve(guest, req["to"])
    run(guest, conn, req_id, do_rename, (src, dst), src)


def handle_copy(guest, conn, req_id, req, payload):
    src, dst = resolve(guest, req["from"]), resolve(guest, req["to"])
    run(guest, conn, req_id, do_copy, (src, dst, bool(req.get("recursive", False))), src)


def handle_chmod(guest, conn, req_id, req, payload):
    path = resolve(guest, req["path"])
    run(guest, conn, req_id, do_chmod, (path, _mode(req["mode"], None)), path)


def handle_unpack(guest, conn, req_id, req, payload):
    from .filestream import unpack_file  # (filestream builds on this module)

    path, source = resolve(guest, req["path"]), resolve(guest, req["source"])
    fmt = req.get("format") or "auto"
    if fmt not in ("auto", "tar", "tar.gz", "zip"):
        raise GuestError("BAD_REQUEST", "format must be auto, tar, tar.gz or zip")

    def unpack(dest, src, f):
        try:
            return unpack_file(dest, src, f)
        except (ValueError, EOFError) as e:
            raise OSError(errno.EINVAL, str(e), src) from None

    run(guest, conn, req_id, unpack, (path, source, fmt), path)


def handle_delete(guest, conn, req_id, req, payload):
    path = resolve(guest, req["path"])
    if path == "/":
        raise GuestError("FORBIDDEN", "the root directory cannot be deleted")
    run(guest, conn, req_id, do_delete, (path, bool(req.get("recursive", True))), path)


OPS = {
    "stat": handle_stat,
    "list": handle_list,
    "mkdir": handle_mkdir,
    "rename": handle_rename,
    "copy": handle_copy,
    "chmod": handle_chmod,
    "delete": handle_delete,
    "unpack": handle_unpack,
}


def handle_fs(guest, conn, req_id, req, payload):
    """Op fs: one file operation, `request` = {op, ...} (schema/guest.ts FsRequest)."""
    inner = req["request"]
    handler = OPS.get(inner.get("op")) if isinstance(inner, dict) else None
    if handler is None:
        raise GuestError("BAD_REQUEST", "request.op must be one of " + ", ".join(OPS))
    handler(guest, conn, req_id, inner, payload)


HANDLERS = {"fs": handle_fs}
