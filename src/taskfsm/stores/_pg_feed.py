"""PostgreSQL change-feed listeners: ``LISTEN`` on a dedicated connection (sync or async).

Writers issue ``pg_notify`` on the schema's channel (`_postgres.FEED_CHANNEL`) inside
their transaction, so a notification arrives only after its change is committed. The
listener only wakes its follower, which then reads ``changes(after=cursor)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._postgres import CONNECT_TIMEOUT, FEED_CHANNEL

if TYPE_CHECKING:
    from ._postgres import _Errors

_CHANNEL_QUERY = f"SELECT {FEED_CHANNEL}"


class PgListener:
    """A `_feed.Listener`: one autocommit connection that has run ``LISTEN``.

    Raises:
        StoreUnavailable: The server cannot be reached (on connect or while waiting).
    """

    def __init__(self, errors: _Errors) -> None:
        self._errors = errors
        psycopg = errors.psycopg
        try:
            conn = psycopg.connect(errors.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            try:
                row = conn.execute(_CHANNEL_QUERY).fetchone()
                conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(row[0])))
            except BaseException:
                conn.close()
                raise
        except psycopg.OperationalError as exc:
            raise errors.unavailable(exc) from None
        self._conn: Any = conn

    def wait(self, timeout: float) -> None:
        try:
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain the backlog: one read covers every change it announces
                for _ in self._conn.notifies(timeout=0.0):
                    pass
        except self._errors.psycopg.OperationalError as exc:
            raise self._errors.unavailable(exc) from exc

    def close(self) -> None:
        self._conn.close()


class AsyncPgListener:
    """A `_feed.AsyncListener`: one async autocommit connection that has run ``LISTEN``.
    Made by `connect`."""

    def __init__(self, errors: _Errors, conn: Any) -> None:
        self._errors = errors
        self._conn = conn

    @classmethod
    async def connect(cls, errors: _Errors) -> AsyncPgListener:
        """Connect and ``LISTEN``.

        Raises:
            StoreUnavailable: The server cannot be reached.
        """
        psycopg = errors.psycopg
        try:
            conn = await psycopg.AsyncConnection.connect(
                errors.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
            try:
                cur = await conn.execute(_CHANNEL_QUERY)
                row = await cur.fetchone()
                await conn.execute(
                    psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(row[0]))
                )
            except BaseException:
                await conn.close()
                raise
        except psycopg.OperationalError as exc:
            raise errors.unavailable(exc) from None
        return cls(errors, conn)

    async def wait(self, timeout: float) -> None:
        try:
            got = False
            async for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:
                async for _ in self._conn.notifies(timeout=0.0):
                    pass
        except self._errors.psycopg.OperationalError as exc:
            raise self._errors.unavailable(exc) from exc

    async def close(self) -> None:
        await self._conn.close()
