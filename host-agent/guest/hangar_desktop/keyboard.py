"""Typing any text and pressing key combinations under whatever keyboard layout the desktop has.

A character whose keysym the current layout has on the active group's first
two levels is typed with that key (and Shift for the second level). Any other
character (accents under a US layout, CJK, emoji, "@" under a German layout
where it needs AltGr) is typed by binding its keysym to a spare keycode for
the moment and pressing that. This is where xdotool goes wrong: it rebinds
one keycode per character and restores it at once, so an application that
reads the keymap a moment after the key event sees the wrong symbol (or
waits forever). Here spare keycodes are reused least-recently first, never
rebound while an application may still be translating their last press, and
left bound afterwards (they were free), so each character arrives as itself.
Whether the application has read that press is asked of it (fence.py); one
that cannot be asked is given REBIND_AFTER_S.
"""

import contextlib
import struct
import time

from . import keysyms
from .xwire import OP_CHANGE_KEYBOARD_CONTROL, OP_CHANGE_KEYBOARD_MAPPING, OP_GET_KEYBOARD_CONTROL, OP_GET_KEYBOARD_MAPPING

# Core state bits (QueryPointer mask).
SHIFT_MASK = 1 << 0
LOCK_MASK = 1 << 1
# With XKB the core state carries the effective group in bits 13-14.
GROUP_SHIFT = 13
# ChangeKeyboardControl's value bit for the auto-repeat mode (Off 0, On 1).
KB_AUTO_REPEAT_MODE = 1 << 7

# Without an answer from the application (fence.py), a spare keycode is not
# rebound within this long of its last use: time for it to translate the
# previous press with the previous symbol (too short for a stopped or very slow one).
REBIND_AFTER_S = 0.25
# Spare keycodes this daemon takes at most, and at most this share of the free
# ones: the rest stay free for the VNC server, which binds keysyms of its own
# for viewers' keystrokes (Xvnc's keymap has about 19 free keycodes).
MAX_SCRATCH = 24
SCRATCH_SHARE = 0.5
# Bindings idle this long are given back (the keycode is free again).
RELEASE_AFTER_S = 5.0


class KeyError_(ValueError):
    """A key name nobody knows."""


class Keyboard:
    def __init__(self, dpy, xtest, fence=None):
        self.dpy = dpy
        self.xtest = xtest
        self.fence = fence
        # Every press queued before this instant has been read by the focused application (its fence answered).
        self.fenced_at = 0.0
        # Whether to ask the application again; one that did not answer is not waited for twice in one action.
        self.fence_answers = True
        self.per = 0
        self.map = {}
        self.where = {}
        self.scratch = []
        self.bound = {}  # keysym -> spare keycode bound to it
        self.last_used = {}  # spare keycode -> monotonic time of its last press
        self.held = []  # keycodes pressed by key_down and not yet released
        self._load()

    # ------------------------------------------------------------ the keymap

    def _load(self):
        dpy = self.dpy
        first, count = dpy.min_keycode, dpy.max_keycode - dpy.min_keycode + 1
        seq = dpy.send(OP_GET_KEYBOARD_MAPPING, 0, struct.pack("<BBxx", first, count))
        packet = dpy.reply(seq)
        per = packet[1]
        syms = struct.unpack_from(f"<{count * per}I", packet, 32)
        self.per = per
        self.map = {first + i: syms[i * per:(i + 1) * per] for i in range(count)}
        self.where = {}
        for kc in sorted(self.map):
            for col, sym in enumerate(self.map[kc][:4]):
                if sym:
                    self.where.setdefault(sym, []).append((kc, col))
        ours = set(self.bound.values())
        # Keep our own bindings as spare keycodes; drop ones somebody else has taken since.
        self.bound = {sym: kc for sym, kc in self.bound.items() if self.map.get(kc, (0,))[0] == sym}
        free = [kc for kc, row in self.map.items() if not any(row) and kc not in ours]
        limit = min(MAX_SCRATCH, max(2, int((len(free) + len(self.bound)) * SCRATCH_SHARE)))
        self.scratch = sorted(set(self.bound.values())) + free[: max(0, limit - len(self.bound))]
        dpy.mapping_changed = False

    def refresh(self):
        """Re-reads the keymap when someone changed it (a layout switch, the VNC server binding a keysym)."""
        if self.dpy.mapping_changed:
            self._load()

    def _state(self):
        _x, _y, mask = self.dpy.query_pointer()
        return (mask >> GROUP_SHIFT) & 3, mask

    def _locate(self, sym, group, mask):
        """(keycode, needs shift) typing `sym` without AltGr, or None."""
        cols = (2 * group, 2 * group + 1) if group < 2 else ()
        best = None
        for kc, col in self.where.get(sym, ()):
            if col not in cols or kc in self.bound.values():
                continue
            shift = col == cols[1]
            if mask & LOCK_MASK and keysyms.keysym_case_pair(sym):
                # Caps Lock inverts letters; the spare-key path below is immune to it.
                return None
            if best is None or (best[1] and not shift):
                best = (kc, shift)
        return best

    def _begin(self):
        """What every action starts with: the server caught up, the keymap current, a fresh chance for
        the application to answer pings; returns (group, mask)."""
        self.dpy.sync()
        self.refresh()
        self.fence_answers = True
        return self._state()

    def _spare_for(self, sym, pending):
        """A spare keycode bound to `sym`; flushes `pending` events first when it has to rebind one."""
        kc = self.bound.get(sym)
        if kc is not None:
            return kc
        if not self.scratch:
            raise RuntimeError("the keyboard map has no free keycode to type this character with")
        kc = min(self.scratch, key=lambda k: self.last_used.get(k, 0.0))
        self._flush(pending)
        last = self.last_used.get(kc)
        if last is not None and last >= self.fenced_at:
            # Every press queued so far has just been sent: an answer after this covers them all.
            asked = time.monotonic()
            if self.fence is not None and self.fence_answers and self.fence.wait():
                self.fenced_at = asked
            else:
                self.fence_answers = False
                wait = last + REBIND_AFTER_S - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        for old, k in list(self.bound.items()):
            if k == kc:
                del self.bound[old]
        row = struct.pack(f"<{self.per}I", *([sym] * min(4, self.per) + [0] * max(0, self.per - 4)))
        self.dpy.send(OP_CHANGE_KEYBOARD_MAPPING, 1, struct.pack("<BBxx", kc, self.per) + row)
        self.dpy.sync()
        # Our own change: the server tells us too, but the map we hold is already right.
        self.dpy.mapping_changed = False
        self.bound[sym] = kc
        self.map[kc] = tuple([sym] * min(4, self.per) + [0] * max(0, self.per - 4))
        return kc

    def _flush(self, pending):
        if pending:
            self.dpy.send_many(pending)
            pending.clear()

    def _shift_keycode(self):
        for kc, col in self.where.get(keysyms.SHIFT_L, ()):
            if col == 0:
                return kc
        return None

    def _keycode_for(self, sym, group, mask, pending):
        """(keycode, needs shift) for one keysym, binding a spare keycode when the layout lacks it."""
        found = self._locate(sym, group, mask)
        if found is None and sym in keysyms.MODIFIER_KEYSYMS:
            # Modifiers are wherever the layout has them, on any level.
            spots = self.where.get(sym)
            if spots:
                found = (spots[0][0], False)
        if found is not None:
            return found
        return self._spare_for(sym, pending), False

    # ------------------------------------------------------------ typing

    @contextlib.contextmanager
    def _no_repeat(self):
        """The server's key auto-repeat off while our presses are processed. A press and its release
        go out together, but a busy X server (an emulated VM's while its desktop starts) can serve other
        clients for longer than the repeat delay between them, and then repeats the key by itself
        ("hééééllo"). A key held by key_down still repeats, as a held key does."""
        dpy = self.dpy
        was_on = dpy.reply(dpy.send(OP_GET_KEYBOARD_CONTROL))[1] == 1
        if was_on:
            dpy.send(OP_CHANGE_KEYBOARD_CONTROL, 0, struct.pack("<II", KB_AUTO_REPEAT_MODE, 0))
        try:
            yield
        finally:
            if was_on:
                # After our releases on the same connection, so no press of ours is repeated.
                dpy.send(OP_CHANGE_KEYBOARD_CONTROL, 0, struct.pack("<II", KB_AUTO_REPEAT_MODE, 1))
                dpy.sync()

    def type_text(self, text, delay_s=0.0):
        """Types `text` character by character; returns the number of key presses."""
        with self._no_repeat():
            return self._type(text, delay_s)

    def _type(self, text, delay_s):
        group, mask = self._begin()
        shift_kc = self._shift_keycode()
        pending = []
        presses = 0
        prev = ""
        for ch in text:
            if ch == "\n" and prev == "\r":
                prev = ch
                continue  # CRLF is one Enter
            prev = ch
            sym = keysyms.char_keysym(ch)
            kc, shift = self._keycode_for(sym, group, mask, pending)
            if shift and shift_kc is None:
                kc, shift = self._spare_for(sym, pending), False
            if shift:
                pending.append(self.xtest.key(shift_kc, True))
            pending.append(self.xtest.key(kc, True))
            pending.append(self.xtest.key(kc, False))
            if shift:
                pending.append(self.xtest.key(shift_kc, False))
            if kc in self.scratch:
                self.last_used[kc] = time.monotonic()
            presses += 1
            if delay_s > 0:
                self._flush(pending)
                self.dpy.sync()
                time.sleep(delay_s)
            elif len(pending) >= 512:
                self._flush(pending)
        self._flush(pending)
        self.dpy.sync()
        return presses

    # ------------------------------------------------------------ combinations

    def parse_combo(self, combo):
        """Keysyms of "ctrl+shift+t" (or "ctrl++" for the plus key); raises KeyError_ naming an unknown key."""
        if combo in ("+", " "):
            return [keysyms.name_keysym(combo)]
        parts = combo.split("+")
        names = []
        i = 0
        while i < len(parts):
            part = parts[i]
            if part == "":
                # "ctrl++": an empty part followed by another empty part is the "+" key itself.
                if i + 1 < len(parts) and parts[i + 1] == "":
                    names.append("+")
                    i += 2
                    continue
                raise KeyError_(f"empty key name in {combo!r}")
            names.append(part.strip() or part)
            i += 1
        out = []
        for name in names:
            sym = keysyms.name_keysym(name)
            if sym is None:
                raise KeyError_(f"unknown key {name!r} in {combo!r}")
            out.append(sym)
        return out

    def press_combo(self, syms):
        """Presses the keys of one combination in order and releases them in reverse."""
        with self._no_repeat():
            self._press_combo(syms)

    def _press_combo(self, syms):
        group, mask = self._begin()
        pending = []
        codes = []
        need_shift = False
        for sym in syms:
            kc, shift = self._keycode_for(sym, group, mask, pending)
            codes.append(kc)
            need_shift = need_shift or (shift and len(syms) > 0 and sym == syms[-1])
        shift_kc = self._shift_keycode()
        if need_shift and shift_kc is not None and keysyms.SHIFT_L not in syms:
            codes.insert(len(codes) - 1, shift_kc)
        for kc in codes:
            pending.append(self.xtest.key(kc, True))
        for kc in reversed(codes):
            pending.append(self.xtest.key(kc, False))
        for kc in codes:
            if kc in self.scratch:
                self.last_used[kc] = time.monotonic()
        self._flush(pending)
        self.dpy.sync()

    def key_down(self, syms):
        """Presses and holds the keys of a combination (released by key_up or release_all)."""
        group, mask = self._begin()
        pending = []
        for sym in syms:
            kc, _shift = self._keycode_for(sym, group, mask, pending)
            if kc not in self.held:
                pending.append(self.xtest.key(kc, True))
                self.held.append(kc)
        self._flush(pending)
        self.dpy.sync()

    def key_up(self, syms):
        group, mask = self._begin()
        pending = []
        for sym in reversed(syms):
            kc, _shift = self._keycode_for(sym, group, mask, pending)
            pending.append(self.xtest.key(kc, False))
            if kc in self.held:
                self.held.remove(kc)
        self._flush(pending)
        self.dpy.sync()

    def release_idle(self, now=None):
        """Gives back spare keycodes idle for RELEASE_AFTER_S (unbinds them), so they are free for others again."""
        now = time.monotonic() if now is None else now
        idle = [(sym, kc) for sym, kc in self.bound.items() if now - self.last_used.get(kc, 0.0) >= RELEASE_AFTER_S]
        if not idle:
            return 0
        empty = struct.pack(f"<{self.per}I", *([0] * self.per))
        for sym, kc in idle:
            self.dpy.send(OP_CHANGE_KEYBOARD_MAPPING, 1, struct.pack("<BBxx", kc, self.per) + empty)
            del self.bound[sym]
            self.map[kc] = tuple([0] * self.per)
        self.dpy.sync()
        self.dpy.mapping_changed = False
        return len(idle)

    def release_all(self):
        if not self.held:
            return
        self.dpy.send_many([self.xtest.key(kc, False) for kc in reversed(self.held)])
        self.held.clear()
        self.dpy.sync()
