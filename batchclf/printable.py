"""Text from files handed to us, made safe to show on a terminal: control characters as visible escapes.

A file name or a field of a job folder can hold ESC sequences (clear the
screen, set the window title, move the cursor and overwrite earlier lines),
a carriage return, or bidi overrides that reorder what follows.  Shown raw,
they make the terminal lie.  :func:`printable` writes each such character as
``\\xNN`` (or ``\\uNNNN`` above U+00FF), the way reports already show the
bytes of a name that is not UTF-8, so the text reads the same and nothing
in it acts.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls and DEL: the quick test for the common case (plain names).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Controls, format characters (bidi overrides, zero-width), line/paragraph separators, and the
# surrogates that stand for the bytes of a name that is not UTF-8 (no terminal can even encode them).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a name that is not UTF-8 (surrogateescape): shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text) -> str:
    """``text`` with every control and format character (ESC, CR, bidi overrides, zero-width...) escaped.

    None becomes ``""``; other values are shown with ``str``.  Letters, digits,
    punctuation and spaces of any script stay as they are.
    """
    if text is None:
        return ""
    text = str(text)
    if text.isascii():
        return _CONTROL.sub(lambda match: _escape(match.group()), text) if _CONTROL.search(text) else text
    return "".join(_escape(char) if unicodedata.category(char) in _HIDDEN else char for char in text)
