"""State store URLs as they may be shown: the password never appears in a log or an error."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by `***`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if sep else netloc
        query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable state URL>"
