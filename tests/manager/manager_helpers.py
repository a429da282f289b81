"""Helpers shared by the manager's integration tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from harmony_lab.events import EventKind
from harmony_lab.frames import LiveFrame
from harmony_lab.manager import Backfill

# realtime-py 2.34.1 logs ConnectionClosed.code/.reason, deprecated in websockets 13.1; with the
# suite's "warnings are errors" that would kill realtime-py's listener on abnormal closes, which
# never happens in a notebook. Ignore exactly those two deprecations here.
REALTIME_PY_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


_GAP_TABLE_SQL = """
CREATE TABLE public.{name} (
  id         bigint PRIMARY KEY,
  grp        integer NOT NULL DEFAULT 1,
  version    integer NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
GRANT SELECT ON public.{name} TO anon, authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE public.{name};
"""

# Makes the manager's backfill query slow and deterministic: an RLS policy that sleeps once per
# transaction while the gate is open, only outside the embedded server's own sessions (application_name
# harmony_lab_*). The backfill query takes its snapshot, sleeps inside the scan, and returns rows as they
# were when it began: a stand-in for any slow backfill (a big gap, an expensive policy, a remote DB).
_SLOW_GATE_SQL = """
CREATE TABLE public.{name}_gate (open boolean NOT NULL);
INSERT INTO public.{name}_gate VALUES (false);
GRANT SELECT ON public.{name}_gate TO anon;
CREATE FUNCTION public.{name}_slow() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF current_setting('application_name') NOT LIKE 'harmony_lab%'
     AND (SELECT open FROM public.{name}_gate)
     AND coalesce(current_setting('{name}.slept', true), '') <> '1' THEN
    PERFORM pg_sleep({seconds});
    PERFORM set_config('{name}.slept', '1', true);
  END IF;
  RETURN true;
END
$$;
ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY;
CREATE POLICY {name}_read ON public.{name} FOR SELECT TO anon USING (public.{name}_slow());
"""


@dataclass
class GapTable:
    """A table ``(id, grp, version, updated_at)`` streamed into a LiveFrame by a manager with backfill,
    for gap tests against a real LocalRealtime. ``frame()`` and ``table()`` give ``{id: version}``."""

    rt: Any
    mgr: Any
    lf: LiveFrame
    events: list[Any]
    name: str
    where: str

    async def gap(self, reason: str, refuse: float = 1.0) -> None:
        """Drop every connection and refuse new ones for ``refuse`` s; wait until the channel notices."""
        self.rt.faults.refuse(refuse)
        self.rt.faults.drop_all(code=1001, reason=reason)
        await self.mgr.wait_for_status(self.name, "reconnecting", timeout=5)

    async def open_gate(self) -> None:
        """From now on the next backfill query sleeps inside its scan (needs ``slow_seconds``)."""
        await self.rt.execute(f"UPDATE public.{self.name}_gate SET open = true")

    async def bump(self, version: int, row_id: int) -> None:
        await self.rt.execute(
            f"UPDATE public.{self.name} SET version = %s, updated_at = clock_timestamp() WHERE id = %s",
            version,
            row_id,
        )

    async def table(self) -> dict[int, int]:
        rows = await self.rt.execute(f"SELECT id, version FROM public.{self.name} {self.where}")
        return {int(i): int(v) for i, v in rows}

    def frame(self) -> dict[int, int]:
        df = self.lf.df
        return {int(i): int(v) for i, v in zip(df["id"], df["version"], strict=True)} if len(df) else {}

    def reports(self) -> list[Any]:
        """The manager's backfill reports so far."""
        return backfill_reports(self.events)


def backfill_reports(events: list[Any]) -> list[Any]:
    return [e for e in events if e.kind is EventKind.SYSTEM and e.reason == "backfill"]


async def gap_table(
    rt: Any,
    make_manager: Callable[..., Any],
    name: str,
    *,
    lookback: float,
    filtered: bool = False,
    slow_seconds: float | None = None,
    manager_options: dict[str, Any] | None = None,
    **backfill: Any,
) -> GapTable:
    """Create table ``name`` and subscribe channel ``name`` to it with ``Backfill(column="updated_at")``.

    ``filtered`` subscribes with ``grp=eq.1`` (and makes the table REPLICA IDENTITY FULL so the filter
    applies to DELETEs too); ``slow_seconds`` installs the gate that makes the backfill query slow.
    """
    sql = _GAP_TABLE_SQL.format(name=name)
    if filtered:
        sql += f"ALTER TABLE public.{name} REPLICA IDENTITY FULL;\n"
    await rt.execute(sql)
    if slow_seconds is not None:
        await rt.execute(_SLOW_GATE_SQL.format(name=name, seconds=slow_seconds))
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, **(manager_options or {}))
    lf = LiveFrame(None, name, max_rows=None)
    events: list[Any] = []
    mgr.add_listener(events.append)
    await mgr.subscribe_to_table(
        name,
        name,
        filter="grp=eq.1" if filtered else None,
        callback=lf.apply,
        backfill=Backfill(column="updated_at", lookback=lookback, **backfill),
    )
    await mgr.wait_for_status(name, "connected", timeout=10)
    return GapTable(rt, mgr, lf, events, name, "WHERE grp = 1" if filtered else "")
