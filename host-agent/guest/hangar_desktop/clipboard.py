"""The CLIPBOARD selection's text, for the events socket's clipboard producer.

Read with `xclip -o -selection clipboard` (the desktop template installs
xclip), as the desktop's user with the desktop's environment, under a
timeout: asking the owner for its text over our own X connection would mean
selection conversion with INCR transfers for large texts, which xclip already
does right. Only the first TEXT_CAP bytes travel; the hash and the length
cover everything read (at most READ_MAX bytes).

The text is read again only when the X server says the selection changed
hands (XFixes SelectionNotify: every copy sets the owner anew, even the same
application's), so a watched clipboard costs no process per look.
"""

import hashlib
import shutil
import struct
import subprocess
import threading

TEXT_CAP = 64 * 1024
READ_MAX = 16 * 1024 * 1024
READ_TIMEOUT_S = 2.0


class ClipboardUnavailable(Exception):
    pass


def cut_utf8(raw, cap):
    """The longest prefix of `raw` of at most `cap` bytes that does not split a UTF-8 character."""
    if len(raw) <= cap:
        return raw
    end = cap
    while end > 0 and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return raw[:end]


def read(env):
    """{sha256, bytes, truncated, text} of the clipboard's text; None when it holds none (empty, an image, an owner that does not answer)."""
    xclip = shutil.which("xclip", path=env.get("PATH"))
    if xclip is None:
        raise ClipboardUnavailable("xclip is not installed on this computer (the desktop template has it)")
    proc = subprocess.Popen([xclip, "-o", "-selection", "clipboard"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    timer = threading.Timer(READ_TIMEOUT_S, proc.kill)
    timer.start()
    digest = hashlib.sha256()
    head = bytearray()
    total = 0
    try:
        while total < READ_MAX:
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            digest.update(chunk)
            if len(head) <= TEXT_CAP:
                head += chunk[:TEXT_CAP + 4 - len(head)]
        if total >= READ_MAX:
            proc.kill()
    finally:
        timer.cancel()
        proc.stdout.close()
        code = proc.wait()
    if code != 0 and total < READ_MAX:
        return None
    text = cut_utf8(bytes(head), TEXT_CAP).decode("utf-8", "replace")
    return {"sha256": digest.hexdigest(), "bytes": total, "truncated": total > TEXT_CAP, "text": text}


XFIXES_QUERY_VERSION = 0
XFIXES_SELECT_SELECTION_INPUT = 2
SET_SELECTION_OWNER_MASK = 1


class Clipboard:
    """The clipboard as one X connection sees it: its last text, and whether it changed hands since."""

    def __init__(self, dpy, selection):
        self.dpy = dpy
        self.selection = selection
        self.last = None
        self.stale = True
        ext = dpy.query_extension("XFIXES")
        self.event_code = None
        if ext is not None:
            major, first_event, _ = ext
            # XFixes answers nothing else before the client said which version it speaks.
            dpy.reply(dpy.send(major, XFIXES_QUERY_VERSION, struct.pack("<II", 5, 0)))
            dpy.send(major, XFIXES_SELECT_SELECTION_INPUT, struct.pack("<III", dpy.screen.root, selection, SET_SELECTION_OWNER_MASK))
            dpy.sync()
            self.event_code = first_event

    def owner(self):
        return self.dpy.get_selection_owner(self.selection)

    def must_read(self):
        """Whether the text must be read (again): never read, or the selection changed hands since (without XFixes: always)."""
        if self.event_code is None:
            return True
        self.dpy.sync()  # a round trip: every notification sent before it has been read
        # Nothing else on this connection reads events (the list is bounded): take them all.
        events, self.dpy.events = self.dpy.events, []
        if any(e[0] & 0x7F == self.event_code for e in events):
            self.stale = True
        return self.stale

    def remember(self, clip):
        self.last = clip
        self.stale = False
