"""The CLIPBOARD selection's text, for the events socket's clipboard producer.

Read with `xclip -o -selection clipboard` (the desktop template installs
xclip), as the desktop's user with the desktop's environment, under a
timeout: asking the owner for its text over our own X connection would mean
selection conversion with INCR transfers for large texts, which xclip already
does right. Only the first TEXT_CAP bytes travel; the hash and the length
cover everything read (at most READ_MAX bytes).
"""

import hashlib
import shutil
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
