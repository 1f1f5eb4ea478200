"""Database URLs as shown to people: a password never appears in a message or a log line
(``stepline worker`` and ``stepline server`` log their database at start; every CLI error names
it; ``--verbose`` says it)."""

from __future__ import annotations

import re

# user:password@ (up to the last @ before the path: an unencoded @ in a password), and a
# password=… query parameter (libpq's URIs take any connection keyword there)
_USERINFO = re.compile(r"(://[^:/@?#]*):[^/?#]*@")
_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def shown_url(url: str) -> str:
    """``url`` with its password, if any, written ``***``."""
    if "@" not in url and "password" not in url.lower():
        return url
    return _PARAMETER.sub(r"\1***", _USERINFO.sub(r"\1:***@", url))
