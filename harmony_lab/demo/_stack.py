"""``stack()``: the running stack a notebook should use.

``harmony-lab lab`` (and Binder's ``start``) run one embedded stack plus demo traffic in the
background and hand its coordinates to the notebooks through the environment:
``HARMONY_LAB_URL``, ``HARMONY_LAB_ANON_KEY``, ``HARMONY_LAB_SERVICE_ROLE_KEY``, ``HARMONY_LAB_DSN`` and
``HARMONY_LAB_JWT_SECRET``. :func:`stack` returns a :class:`RemoteStack` for those; without them it
starts a ``LocalRealtime`` in this process (on its own thread, so it keeps serving while cells run)
and returns that. Either way the object has ``url``, ``anon_key``, ``service_role_key``, ``dsn``,
``token_for()``, ``await execute()``, ``faults`` and ``env()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from harmony_lab.demo._env import (
    ENV_ANON,
    ENV_DSN,
    ENV_KEYS,
    ENV_SECRET,
    ENV_SERVICE,
    ENV_TRAFFIC,
    ENV_URL,
    NOTEBOOK_USER,
)

__all__ = ["ENV_KEYS", "BackgroundTraffic", "RemoteStack", "stack", "stack_from_env", "traffic"]

logger = logging.getLogger(__name__)

_REQUIRED: Final = (ENV_URL, ENV_ANON, ENV_SERVICE, ENV_DSN)


@dataclass(frozen=True)
class RemoteStack:
    """A stack started by another process (``harmony-lab lab``, Binder), described by the environment."""

    url: str
    anon_key: str
    service_role_key: str
    dsn: str
    jwt_secret: str | None = None
    traffic: float | None = None  # actions/s of the simulator the other process runs, if any
    _faults: Any = field(default=None, repr=False, compare=False)

    @property
    def faults(self) -> Any:
        """The server's faults over its admin HTTP endpoint (``RemoteFaults``)."""
        if self._faults is None:
            from harmony_lab.server.faults import RemoteFaults

            object.__setattr__(self, "_faults", RemoteFaults(self.url, self.service_role_key))
        return self._faults

    def token_for(
        self, user_id: Any, role: str = "authenticated", expires_in: float = 3600, **claims: Any
    ) -> str:
        """A user JWT like ``LocalRealtime.token_for`` (needs ``HARMONY_LAB_JWT_SECRET``)."""
        if not self.jwt_secret:
            raise RuntimeError(
                f"token_for() needs the stack's JWT secret; set {ENV_SECRET} (harmony-lab lab and "
                "harmony-lab stack export it)"
            )
        from harmony_lab.server import make_token

        now = int(time.time())
        body: dict[str, Any] = {"sub": str(user_id), "role": role, "aud": "authenticated"}
        body.update(iat=now, exp=int(now + expires_in))
        body.update(claims)
        return make_token(self.jwt_secret, body)

    async def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement on the stack's database; the rows it returned (empty if none)."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cur = await conn.execute(sql, args or None)
            return list(await cur.fetchall()) if cur.description is not None else []

    def env(self) -> dict[str, str]:
        out = {
            ENV_URL: self.url,
            ENV_ANON: self.anon_key,
            ENV_SERVICE: self.service_role_key,
            ENV_DSN: self.dsn,
        }
        if self.jwt_secret:
            out[ENV_SECRET] = self.jwt_secret
        if self.traffic:
            out[ENV_TRAFFIC] = f"{self.traffic:g}"
        return out

    def stop(self) -> None:
        """Nothing to stop: the stack belongs to the process that started it."""

    def __repr__(self) -> str:
        return f"<RemoteStack {self.url} (started by another process; faults over HTTP)>"


def stack_from_env(environ: Mapping[str, str] | None = None) -> RemoteStack | None:
    """The stack described by ``HARMONY_LAB_*`` variables, or None when they are not all set."""
    env = os.environ if environ is None else environ
    present = [k for k in _REQUIRED if env.get(k)]
    if not present:
        return None
    if len(present) != len(_REQUIRED):
        missing = [k for k in _REQUIRED if not env.get(k)]
        raise RuntimeError(f"incomplete harmony_lab environment: {missing} unset while {present} are set")
    secret = env.get(ENV_SECRET) or None
    rate = env.get(ENV_TRAFFIC)
    try:
        traffic = float(rate) if rate else None
    except ValueError:
        raise RuntimeError(f"{ENV_TRAFFIC} must be a number of actions per second; got {rate!r}") from None
    return RemoteStack(env[ENV_URL], env[ENV_ANON], env[ENV_SERVICE], env[ENV_DSN], secret, traffic)


_lock = threading.Lock()
_local: Any = None


def stack(*, local: bool | None = None) -> Any:
    """The stack for this notebook: the one ``harmony-lab lab`` runs (from the environment), else an
    in-process ``LocalRealtime`` started on its own thread (one per process, reused on re-runs).

    ``local=True`` always uses the in-process stack; ``local=False`` requires the environment.
    """
    if local is not True:
        remote = stack_from_env()
        if remote is not None:
            logger.info("using the stack from the environment: %s", remote.url)
            return remote
        if local is False:
            raise RuntimeError(
                f"no running stack in the environment ({', '.join(_REQUIRED)}); start one with "
                "`harmony-lab lab` or `harmony-lab stack`, or call stack() to start one in this process"
            )
    global _local
    with _lock:
        if _local is None or not _is_running(_local):
            from harmony_lab.local import LocalRealtime

            _local = LocalRealtime().start()
            logger.info("started an in-process LocalRealtime: %s", _local.url)
        return _local


def _is_running(rt: Any) -> bool:
    try:
        rt.url  # noqa: B018 - raises RuntimeError once the stack was stopped
    except RuntimeError:
        return False
    return True


class BackgroundTraffic:
    """Stands in for the simulator another process (``harmony-lab lab``, Binder) already runs."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    async def aclose(self) -> None:
        """Nothing to stop here: the traffic belongs to the process that runs the stack."""

    def __repr__(self) -> str:
        return f"<BackgroundTraffic {self.rate:g} actions/s, run by the process that started the stack>"


_sims: dict[int, Any] = {}


async def traffic(
    rt: Any, *, rate: float | None = None, users: int = 12, seed: int | None = None, **options: Any
) -> Any:
    """Demo traffic for a notebook: a running :class:`~harmony_lab.demo.Simulator` on this kernel's
    loop — or, when the stack comes from ``harmony-lab lab`` which already simulates, a
    :class:`BackgroundTraffic` placeholder. A ``rate`` above the background's starts a table-only
    simulator here for the difference, so the notebook gets the rate it asked for. Either way
    ``await result.aclose()`` is safe. Without a background simulator ``rate`` defaults to 5 actions/s.

    The notebook's own user (``NOTEBOOK_USER``, alice) is never simulated. Calling it again for the
    same stack returns the simulator that is still running (re-running a cell starts no second one).
    """
    from harmony_lab.demo._simulator import Simulator

    if isinstance(rt, RemoteStack) and rt.traffic:
        if rate is None or rate <= rt.traffic:
            return BackgroundTraffic(rt.traffic)
        # the background runs slower than asked: top it up with table-only traffic from this kernel
        # (presence stays with the background simulator, which already tracks these users)
        options["presence"] = False
        options["statuses"] = False  # nor who is online: profiles.status stays the background's
        logger.info("background traffic %g actions/s; adding %g here", rt.traffic, rate - rt.traffic)
        rate -= rt.traffic
    current = _sims.get(id(rt))
    if current is not None and current.rt is rt and current.running:
        return current
    options.setdefault("exclude", (NOTEBOOK_USER,))
    sim = Simulator(rt, users=users, rate=5.0 if rate is None else rate, seed=seed, **options)
    if isinstance(rt, RemoteStack) and rt.traffic:
        sim.background_rate = rt.traffic  # its repr says what the notebook gets in all
    await sim.start()
    _sims[id(rt)] = sim
    return sim
