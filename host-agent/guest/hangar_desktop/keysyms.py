"""Key names and characters as X keysyms.

Names are what clients send to `key`: X keysym names ("Return", "Page_Down",
"F5"), the short forms agents and SDKs use ("enter", "esc", "pagedown",
"ctrl", "cmd"), browser key names ("ArrowUp", "Control", "Meta"), or a single
character. Lookup ignores case, "_", "-" and spaces, except for single
characters, whose case is meaningful ("a" vs "A").
"""

# Keysyms of keys that are not characters (X11/keysymdef.h values).
_NAMED = {
    "BackSpace": 0xFF08, "Tab": 0xFF09, "Linefeed": 0xFF0A, "Clear": 0xFF0B, "Return": 0xFF0D,
    "Pause": 0xFF13, "Scroll_Lock": 0xFF14, "Sys_Req": 0xFF15, "Escape": 0xFF1B, "Delete": 0xFFFF,
    "Home": 0xFF50, "Left": 0xFF51, "Up": 0xFF52, "Right": 0xFF53, "Down": 0xFF54,
    "Prior": 0xFF55, "Next": 0xFF56, "End": 0xFF57, "Begin": 0xFF58,
    "Select": 0xFF60, "Print": 0xFF61, "Execute": 0xFF62, "Insert": 0xFF63, "Undo": 0xFF65, "Redo": 0xFF66,
    "Menu": 0xFF67, "Find": 0xFF68, "Cancel": 0xFF69, "Help": 0xFF6A, "Break": 0xFF6B,
    "Mode_switch": 0xFF7E, "Num_Lock": 0xFF7F,
    "KP_Space": 0xFF80, "KP_Tab": 0xFF89, "KP_Enter": 0xFF8D, "KP_Home": 0xFF95, "KP_Left": 0xFF96,
    "KP_Up": 0xFF97, "KP_Right": 0xFF98, "KP_Down": 0xFF99, "KP_Prior": 0xFF9A, "KP_Next": 0xFF9B,
    "KP_End": 0xFF9C, "KP_Begin": 0xFF9D, "KP_Insert": 0xFF9E, "KP_Delete": 0xFF9F, "KP_Equal": 0xFFBD,
    "KP_Multiply": 0xFFAA, "KP_Add": 0xFFAB, "KP_Separator": 0xFFAC, "KP_Subtract": 0xFFAD,
    "KP_Decimal": 0xFFAE, "KP_Divide": 0xFFAF,
    "Shift_L": 0xFFE1, "Shift_R": 0xFFE2, "Control_L": 0xFFE3, "Control_R": 0xFFE4, "Caps_Lock": 0xFFE5,
    "Shift_Lock": 0xFFE6, "Meta_L": 0xFFE7, "Meta_R": 0xFFE8, "Alt_L": 0xFFE9, "Alt_R": 0xFFEA,
    "Super_L": 0xFFEB, "Super_R": 0xFFEC, "Hyper_L": 0xFFED, "Hyper_R": 0xFFEE,
    "ISO_Level3_Shift": 0xFE03, "ISO_Left_Tab": 0xFE20,
    "XF86AudioLowerVolume": 0x1008FF11, "XF86AudioMute": 0x1008FF12, "XF86AudioRaiseVolume": 0x1008FF13,
    "XF86AudioPlay": 0x1008FF14, "XF86AudioStop": 0x1008FF15, "XF86AudioPrev": 0x1008FF16,
    "XF86AudioNext": 0x1008FF17, "XF86Back": 0x1008FF26, "XF86Forward": 0x1008FF27,
    "XF86Reload": 0x1008FF73, "XF86Copy": 0x1008FF57, "XF86Paste": 0x1008FF6D, "XF86Cut": 0x1008FF58,
}
for _i in range(10):
    _NAMED[f"KP_{_i}"] = 0xFFB0 + _i
for _i in range(1, 36):
    _NAMED[f"F{_i}"] = 0xFFBE + _i - 1

# Latin-1 keysym names (their keysym is the character's code point).
_LATIN1_NAMES = {
    "space": " ", "exclam": "!", "quotedbl": '"', "numbersign": "#", "dollar": "$", "percent": "%",
    "ampersand": "&", "apostrophe": "'", "quoteright": "'", "parenleft": "(", "parenright": ")",
    "asterisk": "*", "plus": "+", "comma": ",", "minus": "-", "period": ".", "slash": "/",
    "colon": ":", "semicolon": ";", "less": "<", "equal": "=", "greater": ">", "question": "?",
    "at": "@", "bracketleft": "[", "backslash": "\\", "bracketright": "]", "asciicircum": "^",
    "underscore": "_", "grave": "`", "quoteleft": "`", "braceleft": "{", "bar": "|", "braceright": "}",
    "asciitilde": "~", "nobreakspace": "\u00a0", "section": "§", "degree": "°", "sterling": "£",
    "EuroSign": "€",
}

# Short and browser-style names for the same keys.
_ALIASES = {
    "enter": "Return", "ret": "Return", "newline": "Return", "esc": "Escape", "backspace": "BackSpace",
    "bksp": "BackSpace", "del": "Delete", "ins": "Insert", "pageup": "Prior", "pgup": "Prior",
    "pagedown": "Next", "pgdn": "Next", "pgdown": "Next", "arrowup": "Up", "arrowdown": "Down",
    "arrowleft": "Left", "arrowright": "Right", "capslock": "Caps_Lock", "caps": "Caps_Lock",
    "numlock": "Num_Lock", "scrolllock": "Scroll_Lock", "printscreen": "Print", "prtsc": "Print",
    "prtscr": "Print", "sysrq": "Sys_Req", "contextmenu": "Menu", "apps": "Menu",
    "ctrl": "Control_L", "control": "Control_L", "lctrl": "Control_L", "rctrl": "Control_R",
    "controlleft": "Control_L", "controlright": "Control_R",
    "shift": "Shift_L", "lshift": "Shift_L", "rshift": "Shift_R", "shiftleft": "Shift_L", "shiftright": "Shift_R",
    "alt": "Alt_L", "lalt": "Alt_L", "ralt": "Alt_R", "altleft": "Alt_L", "altright": "Alt_R", "option": "Alt_L",
    "altgr": "ISO_Level3_Shift", "altgraph": "ISO_Level3_Shift",
    "super": "Super_L", "win": "Super_L", "windows": "Super_L", "meta": "Super_L", "cmd": "Super_L",
    "command": "Super_L", "lsuper": "Super_L", "rsuper": "Super_R", "metaleft": "Super_L", "metaright": "Super_R",
    "os": "Super_L", "hyper": "Hyper_L",
    "volumeup": "XF86AudioRaiseVolume", "volumedown": "XF86AudioLowerVolume", "volumemute": "XF86AudioMute",
    "mediaplaypause": "XF86AudioPlay", "mediastop": "XF86AudioStop", "mediatracknext": "XF86AudioNext",
    "mediatrackprevious": "XF86AudioPrev",
}

# Keys that act as modifiers when pressed with others ("ctrl+c").
MODIFIER_KEYSYMS = frozenset(_NAMED[n] for n in (
    "Shift_L", "Shift_R", "Control_L", "Control_R", "Meta_L", "Meta_R", "Alt_L", "Alt_R",
    "Super_L", "Super_R", "Hyper_L", "Hyper_R", "ISO_Level3_Shift", "Mode_switch",
))
SHIFT_L = _NAMED["Shift_L"]


def _squash(name):
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


_LOOKUP = {}
for _name, _sym in _NAMED.items():
    _LOOKUP[_squash(_name)] = _sym
for _name, _char in _LATIN1_NAMES.items():
    _LOOKUP.setdefault(_squash(_name), ord(_char))
for _alias, _name in _ALIASES.items():
    _LOOKUP[_squash(_alias)] = _NAMED[_name]


def char_keysym(ch):
    """The keysym that types character `ch` (Latin-1 keysyms are the code point; the rest are Unicode keysyms)."""
    cp = ord(ch)
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    if ch == "\n" or ch == "\r":
        return _NAMED["Return"]
    if ch == "\t":
        return _NAMED["Tab"]
    if ch == "\b":
        return _NAMED["BackSpace"]
    if ch == "\x1b":
        return _NAMED["Escape"]
    return 0x01000000 + cp


def name_keysym(name):
    """The keysym a key name stands for, or None when nobody knows the name."""
    if len(name) == 1:
        return char_keysym(name)
    sym = _LOOKUP.get(_squash(name))
    if sym is not None:
        return sym
    if name.lower().startswith("0x"):
        try:
            value = int(name, 16)
        except ValueError:
            return None
        return value if 0 < value <= 0x1FFFFFFF else None
    if name.upper().startswith("U+") or (name.startswith("U") and len(name) in (5, 6) and _is_hex(name[1:])):
        try:
            return char_keysym(chr(int(name[2:] if name[1] == "+" else name[1:], 16)))
        except ValueError:
            return None
    return None


def _is_hex(s):
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def keysym_case_pair(sym):
    """(lower, upper) keysyms of a letter keysym, or None when the keysym has no case."""
    ch = keysym_char(sym)
    if ch is None or ch.lower() == ch.upper():
        return None
    return char_keysym(ch.lower()), char_keysym(ch.upper())


def keysym_char(sym):
    """The character a keysym types, when it is a Latin-1 or Unicode keysym."""
    if 0x20 <= sym <= 0x7E or 0xA0 <= sym <= 0xFF:
        return chr(sym)
    if 0x01000100 <= sym <= 0x0110FFFF:
        return chr(sym - 0x01000000)
    return None
