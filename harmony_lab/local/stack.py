"""``LocalRealtime``: PostgreSQL + the Harmony schema + change capture + the Realtime-compatible server.

>>> async with LocalRealtime() as rt:                 # doctest: +SKIP
...     client = await supabase.acreate_client(rt.url, rt.anon_key)
>>> rt = LocalRealtime().start()                     # doctest: +SKIP  (own thread; notebooks, scripts)
>>> rt.stop()                                         # doctest: +SKIP

Start-up order: LocalPostgres → ``apply_schema`` (seed) → postgres_changes hub → websocket server.
Nothing is written to disk except Postgres' data directory (temporary unless ``data_dir`` is given).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harmony_lab._aio import close_loop
from harmony_lab.server import Authorizer, RealtimeServer, ServerLimits, make_token

if TYPE_CHECKING:
    from harmony_lab.local.postgres import LocalPostgres
    from harmony_lab.server.faults import Faults

__all__ = ["LocalRealtime"]

logger = logging.getLogger(__name__)

_KEY_LIFETIME_S = 10 * 365 * 24 * 3600
_PUBLICATION = "supabase_realtime"


class LocalRealtime:
    """A complete local Supabase Realtime: Postgres, the Harmony schema, and the websocket server.

    ``async with LocalRealtime() as rt`` runs the server on the current event loop; ``start()`` runs the
    whole stack on a private daemon thread (safe from a notebook or any thread) and ``stop()`` ends it.

    ``port=None`` picks a free port; ``jwt_secret=None`` generates one; ``limits`` are the server's
    :class:`~harmony_lab.server.ServerLimits`; ``seed`` loads the Harmony demo data; ``postgres`` reuses a
    running :class:`~harmony_lab.local.LocalPostgres` (not stopped by us) instead of starting one in
    ``data_dir``. ``private_only=True`` admits private channels only, like turning "Allow public access"
    off in a Supabase project's Realtime settings (public joins are refused with ``PrivateOnly``).
    """

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        jwt_secret: str | None = None,
        limits: ServerLimits | None = None,
        seed: bool = True,
        postgres: LocalPostgres | None = None,
        private_only: bool = False,
    ) -> None:
        if limits is not None and not isinstance(limits, ServerLimits):
            raise TypeError(f"limits must be a harmony_lab.server.ServerLimits; got {type(limits).__name__}")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536
        ):
            raise ValueError(f"port must be an integer 0-65535 or None; got {port!r}")
        if not isinstance(private_only, bool):
            raise TypeError(f"private_only must be True or False; got {private_only!r}")
        self.private_only = private_only
        self._data_dir = data_dir
        self._port = port or 0
        self.host = host
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(32)
        self.limits = limits or ServerLimits()
        self.seed = seed
        self._own_postgres = postgres is None
        self._postgres: LocalPostgres | None = postgres
        now = int(time.time())
        self.anon_key = make_token(
            self.jwt_secret, {"iss": "harmony-lab", "role": "anon", "iat": now, "exp": now + _KEY_LIFETIME_S}
        )
        self.service_role_key = make_token(
            self.jwt_secret,
            {"iss": "harmony-lab", "role": "service_role", "iat": now, "exp": now + _KEY_LIFETIME_S},
        )
        self.hub: Any = None
        self._authorizer: Authorizer | None = None
        self._server: RealtimeServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mode: str | None = None  # "async" | "thread"

    # -- what users read -----------------------------------------------------------------------

    @property
    def server(self) -> RealtimeServer:
        if self._server is None:
            raise RuntimeError(
                "LocalRealtime is not started: use `async with LocalRealtime() as rt` or .start()"
            )
        return self._server

    @property
    def postgres(self) -> LocalPostgres:
        if self._postgres is None:
            raise RuntimeError(
                "LocalRealtime is not started: use `async with LocalRealtime() as rt` or .start()"
            )
        return self._postgres

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def url(self) -> str:
        """The Supabase-style project URL: ``acreate_client(rt.url, rt.anon_key)`` works for realtime."""
        return self.server.url

    @property
    def ws_url(self) -> str:
        """The realtime endpoint for ``AsyncRealtimeClient(rt.ws_url, token=rt.anon_key)``."""
        return self.server.ws_url

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def token_for(
        self, user_id: str, role: str = "authenticated", expires_in: float = 3600, **claims: Any
    ) -> str:
        """An HS256 user JWT: ``sub``, ``role``, ``exp``, ``iat``, ``aud="authenticated"`` plus ``claims``
        (e.g. ``email=...``)."""
        now = int(time.time())
        body: dict[str, Any] = {"sub": str(user_id), "role": role, "aud": "authenticated"}
        body.update(iat=now, exp=int(now + expires_in))
        body.update(claims)
        return make_token(self.jwt_secret, body)

    def env(self) -> dict[str, str]:
        """Environment variables that point another process or notebook at this stack."""
        return {
            "HARMONY_LAB_URL": self.url,
            "HARMONY_LAB_ANON_KEY": self.anon_key,
            "HARMONY_LAB_SERVICE_ROLE_KEY": self.service_role_key,
            "HARMONY_LAB_DSN": self.dsn,
        }

    async def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one SQL statement as the postgres superuser (``%s`` placeholders); returns the rows."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cur = await conn.execute(sql, args or None)
            return list(await cur.fetchall()) if cur.description else []

    # -- async lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> LocalRealtime:
        if self._mode is not None:
            raise RuntimeError("this LocalRealtime is already running")
        self._mode = "async"
        try:
            await self._astart()
        except BaseException:
            self._mode = None
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop a stack started with ``async with`` (idempotent)."""
        if self._mode == "thread":
            await asyncio.to_thread(self.stop)
            return
        await self._astop()
        self._mode = None

    async def _astart(self) -> None:
        from harmony_lab.local.postgres import LocalPostgres

        t0 = time.perf_counter()
        try:
            if self._postgres is None:
                self._postgres = LocalPostgres(self._data_dir)
            if not self._postgres.running:
                await asyncio.to_thread(self._postgres.start)
            dsn = self._postgres.dsn
            await self._apply_schema(dsn)
            self.hub = await self._start_hub(dsn)
            self._authorizer = Authorizer(dsn)
            self._server = RealtimeServer(
                jwt_secret=self.jwt_secret, host=self.host, port=self._port, limits=self.limits, hub=self.hub,
                authorizer=self._authorizer, private_only=self.private_only,
            )  # fmt: skip
            await self._server.start()
        except BaseException:
            await self._astop()
            raise
        logger.info("LocalRealtime ready on %s in %.2f s", self._server.url, time.perf_counter() - t0)

    async def _apply_schema(self, dsn: str) -> None:
        try:
            from harmony_lab.local.schema import apply_schema
        except ModuleNotFoundError as exc:
            if exc.name != "harmony_lab.local.schema":
                raise
            logger.warning("harmony_lab.local.schema is missing: starting without the Harmony schema")
            return
        await asyncio.to_thread(apply_schema, dsn, seed=self.seed)

    async def _start_hub(self, dsn: str) -> Any:
        try:
            from harmony_lab.server.changes import ChangesHub
        except ModuleNotFoundError as exc:
            if exc.name != "harmony_lab.server.changes":
                raise
            logger.warning(
                "harmony_lab.server.changes is missing: the server runs without postgres_changes "
                "(broadcast and presence only)"
            )
            return None
        hub = ChangesHub(dsn, publication=_PUBLICATION)
        await hub.start()
        return hub

    async def _astop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                await server.aclose()
            except Exception:
                logger.exception("stopping the Realtime server failed")
        hub, self.hub = self.hub, None
        if hub is not None:
            try:
                await hub.aclose()
            except Exception:
                logger.exception("stopping the postgres_changes hub failed")
        authorizer, self._authorizer = self._authorizer, None
        if authorizer is not None:
            try:
                await authorizer.aclose()
            except Exception:
                logger.exception("closing the Realtime Authorization connections failed")
        if self._own_postgres and self._postgres is not None:
            pg = self._postgres
            try:
                await asyncio.to_thread(pg.stop)
            except Exception:
                logger.exception("stopping %r failed", pg)
            self._postgres = None

    # -- thread lifecycle ----------------------------------------------------------------------

    def start(self) -> LocalRealtime:
        """Run the whole stack on a private daemon thread; returns once it is ready."""
        if self._mode == "thread":
            return self
        if self._mode is not None:
            raise RuntimeError("this LocalRealtime is already running (async with)")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:
                ready.set_exception(exc)
                close_loop(loop)
                return
            ready.set_result(None)
            try:
                loop.run_forever()
            finally:
                close_loop(loop)

        self._mode = "thread"
        self._thread = threading.Thread(target=run, name="harmony-lab-realtime", daemon=True)
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join(10)
            self._thread, self._loop, self._mode = None, None, None
            raise
        return self

    def stop(self) -> None:
        """Stop a stack started with :meth:`start` (idempotent)."""
        if self._mode == "async":
            raise RuntimeError(
                "this LocalRealtime runs on your event loop (async with); "
                "leave the block or `await rt.aclose()`"
            )
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            self._loop, self._thread, self._mode = None, None, None

    def __enter__(self) -> LocalRealtime:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self._server is None:
            return "<LocalRealtime stopped>"
        hub = "postgres_changes" if self.hub is not None else "no postgres_changes"
        conns = self._server.connection_count
        return f"<LocalRealtime {self._server.url} ({self._mode}) {hub} connections={conns}>"
