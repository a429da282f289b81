"""``await manager.doctor("messages")``: can this table stream changes to this role? With fixes as SQL."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Check", "DoctorReport", "run_doctor"]

PUBLICATION = "supabase_realtime"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    severity: str = "error"  # "error": changes will not arrive; "warning": some will be incomplete

    @property
    def mark(self) -> str:
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
