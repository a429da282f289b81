"""Helpers of the Realtime Authorization tests: one LocalRealtime per test module, and an access list
that ``realtime.messages`` policies consult, so a test says who may read or write what.

``lab_acl(topic, sub, extension, action)``: the subscriber whose token has ``sub`` (``anon`` for a
token without one) may ``read`` (SELECT: join, receive) or ``write`` (INSERT: send, track)
``extension`` (``broadcast`` / ``presence``) on ``topic``. Harmony's own policies (members of a
channel on ``channel:<name>`` / ``dm:<name>``) stay in force beside these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import pytest

ACL_SQL = """
CREATE TABLE IF NOT EXISTS public.lab_acl (
  topic text NOT NULL, sub text NOT NULL, extension text NOT NULL, action text NOT NULL,
  PRIMARY KEY (topic, sub, extension, action)
);
CREATE OR REPLACE FUNCTION public.lab_allowed(p_extension text, p_action text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.lab_acl a
    WHERE a.topic = realtime.topic() AND a.sub = coalesce(auth.jwt() ->> 'sub', 'anon')
      AND a.extension = p_extension AND a.action = p_action
  )
$$;
GRANT EXECUTE ON FUNCTION public.lab_allowed(text, text) TO anon, authenticated;
DROP POLICY IF EXISTS lab_acl_read ON realtime.messages;
CREATE POLICY lab_acl_read ON realtime.messages FOR SELECT TO anon, authenticated
  USING (public.lab_allowed(realtime.messages.extension, 'read'));
DROP POLICY IF EXISTS lab_acl_write ON realtime.messages;
CREATE POLICY lab_acl_write ON realtime.messages FOR INSERT TO anon, authenticated
  WITH CHECK (public.lab_allowed(realtime.messages.extension, 'write'));
"""

Rule = tuple[str, str, str, str]
"""(topic, sub, extension, action)"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    """One LocalRealtime (own thread) for the whole test module, with the ``lab_acl`` policies."""
    from harmony_lab.local import LocalRealtime

    rt = LocalRealtime().start()
    try:
        with psycopg.connect(rt.dsn, autocommit=True) as conn:
            conn.execute(ACL_SQL)
        yield rt
    finally:
        rt.stop()


def allow(dsn: str, rules: Iterable[Rule]) -> None:
    rows = list(rules)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO public.lab_acl VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


def deny(dsn: str, rules: Iterable[Rule]) -> None:
    rows = list(rules)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "DELETE FROM public.lab_acl WHERE topic = %s AND sub = %s AND extension = %s AND action = %s",
            rows,
        )


def clear(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM public.lab_acl")


def rules(topic: str, sub: str, *grants: str) -> list[Rule]:
    """``rules(t, "alice", "broadcast:read", "presence:write")`` → ACL rows."""
    out = []
    for g in grants:
        ext, _, action = g.partition(":")
        out.append((topic, sub, ext, action))
    return out


def fresh_topic(prefix: str = "lab") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def unauthorized(topic: str) -> str:
    return f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"
