"""Store URLs: parsing, unknown schemes, password redaction, unreachable servers."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from taskfsm import InvalidArgument, TaskFSMError
from taskfsm.stores import StoreUnavailable, open_async_store, open_store
from taskfsm.stores._url import parse, redact


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///dir/relative.db", "dir/relative.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
        ("SQLite:///x.db", "x.db"),
    ],
)
def test_sqlite_urls_follow_sqlalchemy(url: str, location: str) -> None:
    target = parse(url)
    assert (target.kind, target.location, target.timeout) == ("sqlite", location, 30.0)


def test_sqlite_timeout_option() -> None:
    assert parse("sqlite:///x.db?timeout=2.5").timeout == 2.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "a host is not allowed"),
        ("sqlite:///x.db?mode=ro", "unknown SQLite option 'mode'"),
        ("sqlite:///x.db?timeout=soon", "timeout must be a number of seconds, got 'soon'"),
        ("sqlite:///x.db?timeout=-1", "timeout must not be negative"),
        ("memory://somewhere", "memory:// takes no path"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(url)


@pytest.mark.parametrize("url", ["redis://localhost", "tasks.db", "mysql://u@h/db", ""])
def test_unknown_scheme_lists_the_known_ones(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        open_store(url)
    text = str(info.value)
    assert "memory://" in text
    assert "sqlite:///" in text
    assert "postgresql://" in text
    with pytest.raises(InvalidArgument):
        open_async_store(url)


def test_non_string_url_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="store URL must be a string, got 42"):
        open_store(42)  # type: ignore[arg-type]


def test_unknown_scheme_message_hides_the_password() -> None:
    with pytest.raises(InvalidArgument) as info:
        open_store("mysql://user:hunter2@db.example:3306/x")
    assert "hunter2" not in str(info.value)
    assert "user@db.example:3306" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://u:secret@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://:secret@[::1]:5/db", "postgresql://[::1]:5/db"),
    ],
)
def test_redact_drops_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///relative.db") as store:
        store.create("a")
    assert (tmp_path / "relative.db").is_file()


def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(StoreUnavailable, match=r"no/such/dir/x\.db"):
        open_store(f"sqlite:///{missing}")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_unreachable_postgres_is_unavailable_and_names_the_host_not_the_password() -> None:
    pytest.importorskip("psycopg")
    port = _closed_port()
    with pytest.raises(StoreUnavailable) as info:
        open_store(f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/tasks")
    text = str(info.value)
    assert f"postgresql://alice@127.0.0.1:{port}/tasks" in text
    assert "s3cr3t-pw" not in text


async def test_unreachable_postgres_async_is_unavailable() -> None:
    pytest.importorskip("psycopg")
    port = _closed_port()
    store = open_async_store(f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/tasks")
    with pytest.raises(StoreUnavailable) as info:
        await store.get("a")
    assert "s3cr3t-pw" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes "import psycopg" fail
    with pytest.raises(TaskFSMError, match=r"taskfsm\[postgres\]"):
        open_store("postgresql://u@127.0.0.1/db")
    with pytest.raises(TaskFSMError, match=r"taskfsm\[postgres\]"):
        open_async_store("postgresql://u@127.0.0.1/db")


@pytest.mark.parametrize("url", ["memory://", "sqlite:///:memory:", "sqlite:///{tmp}/x.db"])
def test_a_closed_store_is_unavailable(url: str, tmp_path: Path) -> None:
    store = open_store(url.format(tmp=tmp_path))
    store.create("a")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get("a")
