"""Whether a string can be stored as text by every store.

A name, an id or an expression is kept in text columns: PostgreSQL's cannot hold a NUL
character, and no store can hold a lone surrogate (``"\\ud800"``: a Python string that is not
valid Unicode, which has no UTF-8 encoding; decoded JSON can give one from ``"\\ud800"``).
Refused at the edge, the same on every store (SQLite and PostgreSQL raised
``UnicodeEncodeError`` deep inside a commit; the memory store kept it).
"""

from __future__ import annotations

# the longest App id, worker id or SDK app name (kept in index entries: PostgreSQL refuses a
# B-tree entry over ~2.7 kB; 128 four-byte characters, beside the others, fit), as function ids
MAX_ID_CHARS = 128


def text_problem(value: str) -> tuple[str, int] | None:
    """Why ``value`` cannot be stored as text, and where (the index of the first offending
    character); None when it can."""
    nul = value.find("\x00")
    if nul >= 0:
        return "contains a NUL character (\\x00)", nul
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode (a lone surrogate {value[exc.start]!r})", exc.start
    return None


def is_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (``0``-``9``): what ``int(text)`` reads as
    a whole number. ``str.isdigit`` also holds for ``"²"`` and other digits ``int`` refuses
    (an HTTP header's Latin-1 text can hold them)."""
    return text.isascii() and text.isdigit()


def name_problem(value: str, max_chars: int) -> str | None:
    """Why ``value`` cannot be a name a store keeps (in index entries, so bounded): over
    ``max_chars`` characters, or not storable text (``text_problem``); None when it can."""
    if len(value) > max_chars:
        return f"is {len(value)} characters long (at most {max_chars})"
    problem = text_problem(value)
    return None if problem is None else problem[0]


def clipped(value: str, chars: int = 64) -> str:
    """``value`` cut to its first ``chars`` characters, with an ellipsis, when it is longer:
    for a message about a value that may be of any length."""
    return value if len(value) <= chars else value[:chars] + "\u2026"


def bounded(text: str, chars: int) -> str:
    """``text`` cut to its first ``chars`` characters, saying how many were cut, when it is
    more than 1,024 characters longer (a text a little over the bound is kept whole: a message
    wrapping a bounded one, ``StepError``'s, keeps the inner one's note of what was cut): for a
    text kept whole only up to a size (an error's message)."""
    if len(text) <= chars + 1024:
        return text
    return f"{text[:chars]}\u2026 ({len(text) - chars} more characters cut)"


def shown_text(value: str) -> str:
    """``value`` with every character a store cannot hold as text (NUL, a lone surrogate)
    replaced by U+FFFD: for a name that is only shown."""
    if text_problem(value) is None:
        return value
    cleaned = value.replace("\x00", "\ufffd")
    return cleaned.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def escaped_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``"\\udcff"``, as ``repr`` shows
    it): for a text that is kept whole, but only shown, such as an error's message and stack
    (``os.fsdecode`` of a file name that is not UTF-8 gives such a character). A NUL is kept
    (JSON escapes it)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
