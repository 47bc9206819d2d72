"""Secrets never printed: credentials inside URLs are masked in every message walrelay shows.

An S3 address with credentials in it (``http://KEY:SECRET@host/bucket``) is refused, but the
refusal used to quote the address whole, secret included, into a terminal, a CI log or a bug
report (issue 17). Every message that quotes a user's URL goes through ``redact`` first, and the
command line's last-resort error printer redacts whatever it prints.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : up to the *last* '@' of the URL, since a secret may hold '/', '?' or '#'
# unescaped (AWS secret keys hold '/' and '+'), which would otherwise end the match early.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s'\"]*)@")


def redact(text: str) -> str:
    """``text`` with the user:password part of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
