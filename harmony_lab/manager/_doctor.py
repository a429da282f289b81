"""``await manager.doctor("messages")``: can this table stream changes to this role? With fixes as SQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["Check", "DoctorReport", "TopicDoctorReport", "TopicPolicy", "run_doctor", "run_topic_doctor"]

PUBLICATION = "supabase_realtime"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    severity: str = "error"  # "error": changes will not arrive; "warning": some will be incomplete
    kind: str = "check"  # "answer": a yes/no question about a topic (marked yes / no)

    @property
    def mark(self) -> str:
        if self.kind == "answer":
            return "yes" if self.ok else "no"
        if self.ok:
            return "ok"
        return "FAIL" if self.severity == "error" else "warn"


@dataclasses.dataclass(frozen=True, slots=True)
class DoctorReport:
    schema: str
    table: str
    role: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when nothing blocks changes from reaching ``role`` (warnings allowed)."""
        return all(c.ok or c.severity != "error" for c in self.checks)

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def fixes(self) -> str:
        """All suggested fixes as one SQL script (review before running)."""
        return "\n".join(c.fix for c in self.checks if not c.ok and c.fix)

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    def __repr__(self) -> str:
        head = f"Doctor {self.schema}.{self.table} for role {self.role}: {'OK' if self.ok else 'PROBLEMS'}"
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        lines = [head] + [f"  [{c.mark:>4}] {c.name:<{width}}  {c.detail}" for c in self.checks]
        if self.fixes:
            lines += ["  fixes:"] + [f"    {line}" for line in self.fixes.splitlines()]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        verdict = "OK" if self.ok else "PROBLEMS"
        lines = [
            f"**Realtime doctor** `{self.schema}.{self.table}` for role `{self.role}`: {verdict}",
            "",
            "| check | result | detail |",
            "|---|---|---|",
        ]
        for c in self.checks:
            detail = c.detail.replace("|", "\\|")
            lines.append(f"| {c.name} | {c.mark} | {detail} |")
        if self.fixes:
            lines += ["", "Fixes:", "", "```sql", self.fixes, "```"]
        return "\n".join(lines)


def _ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: any role, schema or table name is safe to paste."""
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str, table: str) -> str:
    return f"{_ident(schema)}.{_ident(table)}"


# uuid columns whose name says they hold the id of the row's owner, best first
_OWNER_HINTS = ("user_id", "owner_id", "profile_id", "author_id", "sender_id", "recipient_id", "created_by")


def _policy_fix(table: str, qname: str, role: str, owner: str | None) -> str:
    """A SELECT policy to create, the owner-scoped form first; the open form only as a warned comment."""
    name = _ident(f"{table}_realtime_select")
    open_form = f"CREATE POLICY {name} ON {qname} FOR SELECT TO {_ident(role)} USING (true);"
    which = f"column {owner}" if owner else "name the column that holds the owner id"
    lines = [f"-- a policy that lets signed-in users read the rows they own ({which}):"]
    own = (
        f"CREATE POLICY {name} ON {qname} FOR SELECT TO authenticated "
        f"USING ((SELECT auth.uid()) = {_ident(owner) if owner else '<owner column>'});"
    )
    lines.append(own if owner else f"-- {own}")
    who = "everyone who has the project's anon key" if role == "anon" else f"every {role} subscriber"
    lines.append(f"-- only if every row may be read by {who} (this opens the whole table to them):")
    lines.append(f"-- {open_form}")
    return "\n".join(lines)


async def run_doctor(
    dsn: str, table: str, *, schema: str = "public", role: str = "authenticated"
) -> DoctorReport:
    import psycopg

    qname = _qualified(schema, table)
    checks: list[Check] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def one(query: str, *params: Any) -> Any:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

        row = await one(
            "SELECT c.oid, c.relreplident, c.relrowsecurity FROM pg_class c WHERE c.oid = to_regclass(%s)",
            qname,
        )
        if row is None:
            checks.append(Check("table exists", False, f"{schema}.{table} does not exist in this database"))
            return DoctorReport(schema, table, role, tuple(checks))
        oid, replident, rls = row
        checks.append(Check("table exists", True, f"{schema}.{table}"))

        pub = await one("SELECT puballtables FROM pg_publication WHERE pubname = %s", PUBLICATION)
        if pub is None:
            checks.append(
                Check(
                    "publication",
                    False,
                    f"publication {PUBLICATION} does not exist",
                    f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {qname};",
                )
            )
        else:
            member = pub[0] or await one(
                "SELECT 1 FROM pg_publication_tables "
                "WHERE pubname = %s AND schemaname = %s AND tablename = %s",
                PUBLICATION,
                schema,
                table,
            )
            checks.append(
                Check(
                    "publication",
                    bool(member),
                    f"in {PUBLICATION}"
                    if member
                    else f"not in publication {PUBLICATION}: no changes are streamed",
                    None if member else f"ALTER PUBLICATION {PUBLICATION} ADD TABLE {qname};",
                )
            )

        pk = await one("SELECT 1 FROM pg_index WHERE indrelid = %s AND indisprimary", oid)
        checks.append(
            Check(
                "primary key",
                bool(pk),
                "present"
                if pk
                else "none: Realtime answers 'Error 400: Bad Request, no primary key' for every change",
                None
                if pk
                else f"ALTER TABLE {qname} ADD COLUMN id bigint "
                "GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY;",
            )
        )

        identity = {"d": "default (primary key)", "f": "full", "n": "nothing", "i": "index"}.get(
            replident, replident
        )
        full = replident == "f"
        checks.append(
            Check(
                "replica identity",
                full,
                f"{identity}"
                + (
                    ""
                    if full
                    else ": UPDATE/DELETE old records carry only the primary key; "
                    "filters on other columns never match DELETEs"
                ),
                None if full else f"ALTER TABLE {qname} REPLICA IDENTITY FULL;",
                severity="warning",
            )
        )

        role_row = await one("SELECT 1 FROM pg_roles WHERE rolname = %s", role)
        if role_row is None:
            checks.append(
                Check("role", False, f"role {role!r} does not exist", f"CREATE ROLE {_ident(role)} NOLOGIN;")
            )
            return DoctorReport(schema, table, role, tuple(checks))
        usage = (await one("SELECT has_schema_privilege(%s, %s, 'USAGE')", role, schema))[0]
        select = (await one("SELECT has_table_privilege(%s, %s::regclass, 'SELECT')", role, qname))[0]
        grant_ok = bool(usage and select)
        missing = []
        if not usage:
            missing.append(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(role)};")
        if not select:
            missing.append(f"GRANT SELECT ON {qname} TO {_ident(role)};")
        checks.append(
            Check(
                "grants",
                grant_ok,
                f"{role} may read {schema}.{table}"
                if grant_ok
                else f"{role} lacks "
                + " and ".join(
                    x for x, ok in (("USAGE on the schema", usage), ("SELECT on the table", select)) if not ok
                )
                + ": Realtime sends 'Error 401: Unauthorized'",
                "\n".join(missing) or None,
            )
        )

        bypass = (await one("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = %s", role))[0]
        if not rls:
            checks.append(
                Check(
                    "row level security",
                    True,
                    "disabled: every subscriber passing the filter sees every row",
                    None,
                    severity="warning",
                )
            )
        elif bypass:
            checks.append(Check("row level security", True, f"enabled; {role} bypasses it"))
        else:
            cur = await conn.execute(
                """
                SELECT policyname, cmd, roles::text[], qual FROM pg_policies
                WHERE schemaname = %s AND tablename = %s AND cmd IN ('SELECT', 'ALL')
                  AND (roles && ARRAY[%s, 'public']::name[])
                """,
                (schema, table, role),
            )
            policies = await cur.fetchall()
            names = ", ".join(p[0] for p in policies)
            owner = None
            if not policies:
                cur = await conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                    "AND NOT attisdropped AND atttypid = 'uuid'::regtype",
                    (oid,),
                )
                uuids = {r[0] for r in await cur.fetchall()}
                owner = next((h for h in _OWNER_HINTS if h in uuids), None)
            checks.append(
                Check(
                    "row level security",
                    bool(policies),
                    f"enabled; SELECT policies for {role}: {names}"
                    if policies
                    else f"enabled but no SELECT policy applies to {role}: "
                    "it receives no INSERT/UPDATE events "
                    "(DELETEs are not RLS-checked)",
                    None if policies else _policy_fix(table, qname, role, owner),
                )
            )
    return DoctorReport(schema, table, role, tuple(checks))


# ------------------------------------------------------------------------------------------ topics
# ``await manager.doctor(topic="dm:alice-bob", user_id=...)``: what Realtime Authorization lets this
# role and user do on a private Broadcast/Presence topic, computed the way a Realtime server does it.

MAX_TOPIC_CHARS = 1024
TOPIC_STATEMENT_TIMEOUT_S = 5.0
# (extension, action, check name): the four questions, in the order they are reported
_ANSWERS: tuple[tuple[str, str, str], ...] = (
    ("broadcast", "read", "read broadcast"),
    ("broadcast", "write", "write broadcast"),
    ("presence", "read", "read presence"),
    ("presence", "write", "track presence"),
)
_VERB = {
    ("broadcast", "read"): "receive broadcasts",
    ("broadcast", "write"): "send broadcasts",
    ("presence", "read"): "receive presence",
    ("presence", "write"): "track presence",
}
_SETTINGS_SQL = (
    "SELECT set_config('role', %s, true), set_config('realtime.topic', %s, true), "
    "set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.sub', %s, true), "
    "set_config('request.jwt.claim.role', %s, true), set_config('request.headers', %s, true)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class TopicPolicy:
    """One policy on ``realtime.messages`` that applies to the role being checked."""

    name: str
    command: str  # SELECT, INSERT, UPDATE, DELETE or ALL
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None
    permissive: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class TopicDoctorReport:
    """What ``role`` (and the token's user) may do on the private ``topic``; index it by check name:
    ``report["read broadcast"].ok``. ``policies`` are the ``realtime.messages`` policies that apply."""

    topic: str
    role: str
    user_id: str | None
    checks: tuple[Check, ...]
    policies: tuple[TopicPolicy, ...] = ()

    @property
    def ok(self) -> bool:
        """True when this role may read and write both extensions on the topic."""
        return all(c.ok or c.severity != "error" for c in self.checks)

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def fixes(self) -> str:
        """All suggested fixes as one SQL script (review before running); a fix shared by several
        answers (one policy for broadcast and presence) appears once."""
        return "\n".join(dict.fromkeys(c.fix for c in self.checks if not c.ok and c.fix))

    def allowed(self, name: str) -> bool | None:
        """The answer to ``"read broadcast"``, ``"write broadcast"``, ``"read presence"`` or
        ``"track presence"``; None when it could not be computed (see the report's checks)."""
        if name not in {n for _, _, n in _ANSWERS}:
            raise KeyError(f"no answer {name!r}; answers: {', '.join(n for _, _, n in _ANSWERS)}")
        for c in self.checks:
            if c.name == name and c.kind == "answer":
                return c.ok
        return None

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    def _who(self) -> str:
        return f"role {self.role}" + (f", user {self.user_id}" if self.user_id else ", no user")

    def _verdict(self) -> str:
        answers = [(n, self.allowed(n)) for _, _, n in _ANSWERS]
        if any(a is None for _, a in answers):
            return "PROBLEMS (not every answer could be computed)"
        return ", ".join(f"{n} {'yes' if a else 'no'}" for n, a in answers)

    def __repr__(self) -> str:
        head = f"Doctor topic {self.topic} for {self._who()}: {self._verdict()}"
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        lines = [head] + [f"  [{c.mark:>4}] {c.name:<{width}}  {c.detail}" for c in self.checks]
        if self.policies:
            lines.append(f"  policies on realtime.messages for {self.role}:")
            for p in self.policies:
                lines.append(f"    {p.name} ({p.command}, to {', '.join(p.roles)})")
                if p.using:
                    lines.append(f"      USING {p.using}")
                if p.with_check:
                    lines.append(f"      WITH CHECK {p.with_check}")
        if self.fixes:
            lines += ["  fixes:"] + [f"    {line}" for line in self.fixes.splitlines()]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        def cell(text: str | None) -> str:
            return "" if text is None else " ".join(text.split()).replace("|", "\\|")

        lines = [
            f"**Realtime doctor** topic `{self.topic}` for {self._who()}: {self._verdict()}",
            "",
            "| check | result | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {c.mark} | {cell(c.detail)} |" for c in self.checks]
        if self.policies:
            lines += [
                "",
                f"Policies on `realtime.messages` that apply to `{self.role}`:",
                "",
                "| policy | command | roles | USING | WITH CHECK |",
                "|---|---|---|---|---|",
            ]
            for p in self.policies:
                kind = "" if p.permissive else " (restrictive)"
                lines.append(
                    f"| {cell(p.name)} | {p.command}{kind} | {cell(', '.join(p.roles))} "
                    f"| {cell(p.using)} | {cell(p.with_check)} |"
                )
        if self.fixes:
            lines += ["", "Fixes:", "", "```sql", self.fixes, "```"]
        return "\n".join(lines)


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (standard_conforming_strings)."""
    return "'" + text.replace("'", "''") + "'"


def check_topic(topic: object) -> str:
    """The topic a policy sees (``realtime.topic()``): without a ``realtime:`` prefix, bounded."""
    if not isinstance(topic, str) or not topic.strip():
        raise TypeError(f"topic must be a non-empty string such as 'dm:alice-bob'; got {topic!r}")
    topic = topic.removeprefix("realtime:")
    if not topic or len(topic) > MAX_TOPIC_CHARS:
        raise ValueError(f"topic must be 1 to {MAX_TOPIC_CHARS} characters; got {len(topic)}")
    if "\x00" in topic:
        raise ValueError("topic must not contain NUL characters")
    return topic


async def _membership(conn: Any) -> tuple[str, str] | None:
    """How this database says who belongs to a topic, for the suggested policies: a boolean
    function of one text argument whose name says membership (``is_topic_member(topic)``), else a
    table with ``user_id uuid`` and ``topic text`` columns (Supabase's guide calls it ``rooms_users``).
    Returns (description, SQL condition) or None."""
    cur = await conn.execute(
        """
        SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proname ILIKE '%%member%%' AND p.pronargs = 1 AND p.proargtypes[0] = 'text'::regtype
          AND p.prorettype = 'boolean'::regtype AND p.prokind = 'f'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'realtime', 'auth', 'extensions')
        ORDER BY n.nspname = 'public' DESC, n.nspname, p.proname LIMIT 1
        """
    )
    row = await cur.fetchone()
    if row is not None:
        fn = f"{_ident(row[0])}.{_ident(row[1])}"
        return f"membership from {row[0]}.{row[1]}(topic)", f"(SELECT {fn}((SELECT realtime.topic())))"
    cur = await conn.execute(
        """
        SELECT c.table_schema, c.table_name FROM information_schema.columns c
        JOIN information_schema.columns t ON t.table_schema = c.table_schema
          AND t.table_name = c.table_name AND t.column_name = 'topic' AND t.data_type = 'text'
        WHERE c.column_name = 'user_id' AND c.data_type = 'uuid'
          AND c.table_schema NOT IN ('pg_catalog', 'information_schema', 'realtime', 'auth')
        ORDER BY c.table_schema = 'public' DESC, c.table_schema, c.table_name LIMIT 1
        """
    )
    row = await cur.fetchone()
    if row is None:
        return None
    qname = _qualified(row[0], row[1])
    return (
        f"membership rows in {row[0]}.{row[1]} (user_id, topic)",
        f"EXISTS (SELECT 1 FROM {qname} m WHERE m.user_id = (SELECT auth.uid()) "
        "AND m.topic = (SELECT realtime.topic()))",
    )


def _plural(names: Sequence[str], one: str, many: str) -> str:
    return f"{', '.join(names)} {one if len(names) == 1 else many}"


def _topic_fix(
    exts: Sequence[str],
    action: str,
    *,
    topic: str,
    role: str,
    user_id: str | None,
    membership: tuple[str, str] | None,
    refusing: Sequence[TopicPolicy],
) -> str:
    """The policy to create for the refused ``exts`` of one action (read or write): the membership
    form first (runnable only when no policy of that command applies yet), then the form for this
    one user on this topic, and the open form only as a warned comment."""
    verb = " and ".join(_VERB[ext, action] for ext in exts)
    grantee = "authenticated" if role == "anon" else _ident(role)
    command = "SELECT" if action == "read" else "INSERT"
    clause = "USING" if action == "read" else "WITH CHECK"
    target = "realtime.messages"
    suffix = "" if len(exts) > 1 else f"_{exts[0]}"
    scope = (
        f"realtime.messages.extension = {_literal(exts[0])}"
        if len(exts) == 1
        else f"realtime.messages.extension IN ({', '.join(_literal(e) for e in exts)})"
    )
    on_topic = f"(SELECT realtime.topic()) = {_literal(topic)}"
    lines: list[str] = []
    if refusing:
        who = f"user {user_id}" if user_id else "this token"
        lines.append(
            f"-- {_plural([p.name for p in refusing], 'applies', 'apply')} to {role} but "
            f"{'refuses' if len(refusing) == 1 else 'refuse'} to let {who} {verb} on {topic}: to admit "
            "them, make that condition true for them (for a membership policy: make the user a member)."
        )
    if role == "anon" or user_id is None:
        lines.append(
            f"-- {role} carries no user id (auth.uid() is NULL): membership needs a signed-in user; "
            "connect with that user's access token."
        )
    if not refusing:
        name = _ident(f"realtime_members_{action}{suffix}")
        if membership is not None:
            desc, cond = membership
            lines.append(f"-- let the topic's members {verb} ({desc}):")
            stmt = (
                f"CREATE POLICY {name} ON {target} FOR {command} TO {grantee} {clause} ({scope} AND {cond});"
            )
            lines.append(stmt if role != "anon" else f"-- {stmt}")
        else:
            lines.append(
                f"-- let the topic's members {verb}: name your membership table (user_id, topic), "
                "as in Supabase's Realtime Authorization guide:"
            )
            lines.append(
                f"-- CREATE POLICY {name} ON {target} FOR {command} TO {grantee} {clause} ({scope} AND "
                "EXISTS (SELECT 1 FROM <membership table> m WHERE m.user_id = (SELECT auth.uid()) "
                "AND m.topic = (SELECT realtime.topic())));"
            )
    if user_id is not None and role != "anon":
        one = _ident(f"realtime_{action}{suffix}_{topic}_{user_id[:8]}"[:63])
        lines.append(
            f"-- {'or ' if not refusing else ''}only this user on this topic ({user_id} on {topic}):"
        )
        lines.append(
            f"-- CREATE POLICY {one} ON {target} FOR {command} TO {grantee} {clause} ({scope} AND "
            f"{on_topic} AND (SELECT auth.uid()) = {_literal(user_id)}::uuid);"
        )
    who = "everyone who has the project's anon key" if role == "anon" else f"every {role} client"
    opened = _ident(f"realtime_open_{action}{suffix}_{topic}"[:63])
    lines.append(f"-- only if {who} may {verb} on {topic} (this opens the topic to all of them):")
    lines.append(
        f"-- CREATE POLICY {opened} ON {target} FOR {command} TO {_ident(role)} {clause} "
        f"({scope} AND {on_topic});"
    )
    return "\n".join(lines)


class _Uncomputed(str):
    """Why an answer could not be computed at all (not a refusal of the subscriber)."""

    __slots__ = ()


class _ProbeRefused(Exception):
    """The doctor's own connection could not do its part of a check."""

    def __init__(self, what: str, error: BaseException) -> None:
        super().__init__(f"{what}: {error}")
        self.why = _Uncomputed(
            f"the doctor's own connection may not {what} ({_first_line(error)}): connect with dsn= as "
            "the owner of realtime.messages or a superuser, as a Realtime server's connection is"
        )


async def _take_role(conn: Any, settings: list[Any]) -> None:
    import psycopg

    try:
        await conn.execute(_SETTINGS_SQL, settings)
    except psycopg.Error as exc:
        raise _ProbeRefused(f"take the role {settings[0]}", exc) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


async def _probe(
    conn: Any, topic: str, role: str, claims: dict[str, Any]
) -> dict[tuple[str, str], bool | str]:
    """Evaluate the four permissions as a Realtime server does, each in a rolled-back transaction.

    Read: insert one probe row per extension as the doctor's own connection (the table's owner or a
    superuser), set the subscriber's role, topic and claims, select the probes back. Write: with
    the same settings, insert one row per extension under a savepoint; ``insufficient_privilege``
    means no. A value that is a string is the error that stopped the check."""
    import json
    import uuid

    import psycopg

    sub = claims.get("sub")
    settings = [role, topic, json.dumps(claims, default=str), None if sub is None else str(sub), role, "{}"]
    out: dict[tuple[str, str], bool | str] = {}
    probes = {ext: uuid.uuid4() for ext in ("broadcast", "presence")}
    try:
        async with conn.transaction(force_rollback=True):
            try:
                for ext, probe in probes.items():
                    await conn.execute(
                        "INSERT INTO realtime.messages (id, topic, extension) VALUES (%s, %s, %s)",
                        (probe, topic, ext),
                    )
            except psycopg.Error as exc:
                raise _ProbeRefused("insert the probe rows", exc) from exc
            await _take_role(conn, settings)
            cur = await conn.execute(
                "SELECT id FROM realtime.messages WHERE id = ANY(%s)", (list(probes.values()),)
            )
            seen = {row[0] for row in await cur.fetchall()}
        for ext, probe in probes.items():
            out[ext, "read"] = probe in seen
    except _ProbeRefused as refused:
        for ext in probes:
            out[ext, "read"] = refused.why
    except psycopg.errors.QueryCanceled as exc:
        for ext in probes:
            out[ext, "read"] = f"a policy ran past the statement timeout: {_first_line(exc)}"
    except psycopg.Error as exc:
        for ext in probes:
            out[ext, "read"] = _first_line(exc)
    try:
        async with conn.transaction(force_rollback=True):
            await _take_role(conn, settings)
            for ext in probes:
                try:
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO realtime.messages (topic, extension) VALUES (%s, %s)", (topic, ext)
                        )
                except psycopg.errors.InsufficientPrivilege:
                    out[ext, "write"] = False
                else:
                    out[ext, "write"] = True
    except _ProbeRefused as refused:
        for ext in probes:
            out.setdefault((ext, "write"), refused.why)
    except psycopg.errors.QueryCanceled as exc:
        for ext in probes:
            out.setdefault((ext, "write"), f"a policy ran past the statement timeout: {_first_line(exc)}")
    except psycopg.Error as exc:
        for ext in probes:
            out.setdefault((ext, "write"), _first_line(exc))
    return out


async def run_topic_doctor(
    dsn: str,
    topic: str,
    *,
    role: str,
    claims: dict[str, Any],
    statement_timeout_s: float = TOPIC_STATEMENT_TIMEOUT_S,
) -> TopicDoctorReport:
    """What ``role`` with ``claims`` may do on the private ``topic`` (see :class:`TopicDoctorReport`).

    ``dsn`` must be able to insert into ``realtime.messages`` past its policies (its owner or a
    superuser), as a Realtime server's connection does. Every statement is bounded by
    ``statement_timeout_s`` and the whole check by twice that plus the time to connect."""
    import psycopg

    topic = check_topic(topic)
    sub = claims.get("sub")
    user_id = None if sub is None else str(sub)
    claims = {**claims, "role": role}
    checks: list[Check] = []
    policies: list[TopicPolicy] = []
    timeout_ms = max(1, int(statement_timeout_s * 1000))
    async with asyncio.timeout(statement_timeout_s * 4 + 10):
        conn = await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            options=f"-c statement_timeout={timeout_ms}",
            application_name="harmony_lab_doctor",
        )
        async with conn:

            async def one(query: str, *params: Any) -> Any:
                cur = await conn.execute(query, params)
                return await cur.fetchone()

            row = await one(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE oid = to_regclass('realtime.messages')"
            )
            if row is None:
                checks.append(
                    Check(
                        "realtime.messages",
                        False,
                        "the realtime schema's messages table does not exist: Realtime Authorization "
                        "has nothing to evaluate (a Supabase project's Realtime server creates it)",
                    )
                )
                return TopicDoctorReport(topic, role, user_id, tuple(checks))
            rls = bool(row[0])
            checks.append(
                Check(
                    "row level security",
                    rls,
                    "enabled on realtime.messages: its policies decide who may read and write the topic"
                    if rls
                    else "disabled on realtime.messages: every role with grants reads and writes every "
                    "private topic",
                    None if rls else "ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;",
                )
            )
            if await one("SELECT 1 FROM pg_roles WHERE rolname = %s", role) is None:
                checks.append(
                    Check(
                        "role",
                        False,
                        f"role {role!r} does not exist: a token with this role is refused every private join",
                    )
                )
                return TopicDoctorReport(topic, role, user_id, tuple(checks))
            bypass = (await one("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = %s", role))[0]
            checks.append(
                Check(
                    "role",
                    True,
                    f"{role} bypasses row level security: every answer is yes"
                    if bypass
                    else f"{role}" + (f", user {user_id}" if user_id else ", no user id in the token"),
                )
            )
            usage, select, insert = await one(
                "SELECT has_schema_privilege(%s, 'realtime', 'USAGE'), "
                "has_table_privilege(%s, 'realtime.messages', 'SELECT'), "
                "has_table_privilege(%s, 'realtime.messages', 'INSERT')",
                role,
                role,
                role,
            )
            missing = [
                grant
                for ok, grant in (
                    (usage, f"GRANT USAGE ON SCHEMA realtime TO {_ident(role)};"),
                    (select, f"GRANT SELECT ON realtime.messages TO {_ident(role)};"),
                    (insert, f"GRANT INSERT ON realtime.messages TO {_ident(role)};"),
                )
                if not ok
            ]
            checks.append(
                Check(
                    "grants",
                    not missing,
                    f"{role} may select and insert realtime.messages (policies decide which rows)"
                    if not missing
                    else f"{role} lacks "
                    + ", ".join(
                        what
                        for what, ok in (
                            ("USAGE on schema realtime", usage),
                            ("SELECT on realtime.messages", select),
                            ("INSERT on realtime.messages", insert),
                        )
                        if not ok
                    ),
                    "\n".join(missing) or None,
                )
            )
            cur = await conn.execute(
                """
                SELECT policyname, cmd, roles::text[], qual, with_check, permissive = 'PERMISSIVE'
                FROM pg_policies
                WHERE schemaname = 'realtime' AND tablename = 'messages'
                  AND EXISTS (SELECT 1 FROM unnest(roles) r
                              WHERE CASE WHEN r = 'public' THEN true
                                         ELSE pg_has_role(%s, r, 'MEMBER') END)
                ORDER BY policyname
                """,
                (role,),
            )
            policies = [
                TopicPolicy(r[0], r[1], tuple(r[2]), r[3], r[4], bool(r[5])) for r in await cur.fetchall()
            ]
            membership = await _membership(conn)
            answers = await _probe(conn, topic, role, claims)

    refused = {
        action: [e for e, a, _ in _ANSWERS if a == action and answers[e, a] is False]
        for action in ("read", "write")
    }
    for ext, action, name in _ANSWERS:
        answer = answers[ext, action]
        verb = _VERB[ext, action]
        command = "SELECT" if action == "read" else "INSERT"
        if isinstance(answer, _Uncomputed):
            checks.append(Check(name, False, f"could not be computed: {answer}"))
            continue
        if isinstance(answer, str):
            # the server refuses on any error of the check, as Supabase's does
            why = "the grants above are missing" if missing else "the check failed, so the server refuses"
            checks.append(Check(name, False, f"may not {verb} on {topic}: {why} ({answer})", kind="answer"))
            continue
        applying = [p for p in policies if p.command in (command, "ALL")]
        if answer:
            why = (
                "row level security is off"
                if not rls
                else f"{role} bypasses row level security"
                if bypass
                else "allowed by " + ", ".join(p.name for p in applying if p.permissive)
            )
            checks.append(Check(name, True, f"may {verb} on {topic}: {why}", kind="answer"))
            continue
        fix: str | None = None
        if missing:
            why = "the grants above are missing"
        else:
            if applying:
                names = [p.name for p in applying]
                who = "user" if user_id else "token"
                why = f"{_plural(names, 'refuses', 'refuse')} it for this {who}"
            else:
                why = f"no {command} policy on realtime.messages applies to {role}"
            # one fix per action covers every refused extension (the same text on each check)
            fix = _topic_fix(
                refused[action],
                action,
                topic=topic,
                role=role,
                user_id=user_id,
                membership=membership,
                refusing=applying,
            )
        checks.append(Check(name, False, f"may not {verb} on {topic}: {why}", fix, kind="answer"))
    return TopicDoctorReport(topic, role, user_id, tuple(checks), tuple(policies))
