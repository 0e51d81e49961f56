"""Store URLs: which backend a URL names, and how to show one without its password."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

import attrs

from .._errors import InvalidArgument

SCHEMES = ("memory://", "sqlite:///path/to/file.db", "postgresql://user@host:port/dbname")


@attrs.frozen
class Target:
    """A parsed store URL.

    Args:
        kind: ``"memory"``, ``"sqlite"`` or ``"postgresql"``.
        location: The SQLite path (or ``":memory:"``), or the libpq URL for PostgreSQL.
        timeout: SQLite's busy timeout in seconds (``?timeout=``).
        display: The URL without a password, for messages.
    """

    kind: str
    location: str
    timeout: float
    display: str


def redact(url: str) -> str:
    """*url* without its password (``user:secret@host`` -> ``user@host``)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable URL>"


def _bad(url: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid store URL {redact(url)!r}: {why}")


def parse(url: object) -> Target:
    """Parse a store URL.

    ``memory://``; ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and
    ``sqlite:///:memory:`` as in SQLAlchemy (``?timeout=SECONDS`` sets the busy
    timeout); ``postgresql://`` or ``postgres://`` libpq URLs.

    Raises:
        InvalidArgument: Not a string, an unknown scheme (the message lists the known
            ones), or a malformed SQLite URL.
    """
    if not isinstance(url, str):
        raise InvalidArgument(f"store URL must be a string, got {url!r}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "memory":
        if rest.strip("/"):
            raise _bad(url, "memory:// takes no path")
        return Target("memory", ":memory:", 0.0, "memory://")
    if sep and scheme == "sqlite":
        path, _, query = rest.partition("?")
        if path and not path.startswith("/"):
            raise _bad(url, "a host is not allowed; use sqlite:///relative.db or sqlite:////abs.db")
        path = path[1:] or ":memory:"
        timeout = 30.0
        for key, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
            if key != "timeout":
                raise _bad(url, f"unknown SQLite option {key!r} (known: timeout)")
            value = values[-1]
            try:
                timeout = float(value)
            except ValueError:
                raise _bad(url, f"timeout must be a number of seconds, got {value!r}") from None
            if not timeout >= 0:
                raise _bad(url, f"timeout must not be negative, got {value!r}")
        return Target("sqlite", path, timeout, url)
    if sep and scheme in ("postgresql", "postgres"):
        return Target("postgresql", url, 0.0, redact(url))
    known = ", ".join(SCHEMES)
    raise InvalidArgument(f"unknown store URL scheme in {redact(url)!r}; use one of: {known}")
