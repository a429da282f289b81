"""doctor()'s suggested SQL is safe to paste whatever the names, and never opens a table silently.

Before, role and schema names went into the fixes unquoted (``CREATE ROLE "x" NOLOGIN; DROP TABLE …``
from a crafted role name), and the row level security fix was ``CREATE POLICY … TO anon USING
(true)``: pasted as suggested, it opened the table to everyone holding the anon key.
"""

from __future__ import annotations

from harmony_lab.manager._doctor import run_doctor

HOSTILE_ROLE = 'lab"; DROP TABLE public.messages; --'
SCHEMA = 'lab "schema"'
TABLE = 'notes"; DROP TABLE public.channels; --'


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def harmony_tables_intact(rt) -> bool:
    rows = await rt.execute(
        "SELECT to_regclass('public.messages') IS NOT NULL AND to_regclass('public.channels') IS NOT NULL"
    )
    return bool(rows[0][0])


async def test_a_missing_role_with_a_hostile_name_is_created_by_that_exact_name(rt):
    report = await run_doctor(rt.dsn, "messages", role=HOSTILE_ROLE)
    assert not report["role"].ok
    await rt.execute(report.fixes)
    rows = await rt.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", HOSTILE_ROLE)
    assert rows[0][0] == 1
    assert await harmony_tables_intact(rt)


async def test_every_fix_for_hostile_names_runs_as_written_and_fixes_exactly_that(rt):
    q = f"{ident(SCHEMA)}.{ident(TABLE)}"
    await rt.execute(f"CREATE ROLE {ident(HOSTILE_ROLE)} NOLOGIN")
    await rt.execute(f"CREATE SCHEMA {ident(SCHEMA)}")
    await rt.execute(f"CREATE TABLE {q} (id bigint PRIMARY KEY, user_id uuid NOT NULL, body text)")
    await rt.execute(f"ALTER TABLE {q} ENABLE ROW LEVEL SECURITY")

    report = await run_doctor(rt.dsn, TABLE, schema=SCHEMA, role=HOSTILE_ROLE)
    assert not report["publication"].ok
    assert not report["grants"].ok
    await rt.execute(report.fixes)
    assert await harmony_tables_intact(rt)
    again = await run_doctor(rt.dsn, TABLE, schema=SCHEMA, role=HOSTILE_ROLE)
    assert again["publication"].ok
    assert again["grants"].ok


async def test_the_policy_fix_offers_the_owner_scoped_form_and_only_comments_the_open_one(rt):
    await rt.execute("CREATE TABLE public.lab_notes (id bigint PRIMARY KEY, user_id uuid NOT NULL)")
    await rt.execute("ALTER TABLE public.lab_notes ENABLE ROW LEVEL SECURITY")
    await rt.execute("GRANT SELECT ON public.lab_notes TO anon, authenticated")
    for role in ("anon", "authenticated"):
        fix = (await run_doctor(rt.dsn, "lab_notes", role=role))["row level security"].fix
        assert fix is not None
        executable = [line for line in fix.splitlines() if not line.startswith("--")]
        # the one statement that runs scopes rows to their owner
        assert executable == [
            'CREATE POLICY "lab_notes_realtime_select" ON "public"."lab_notes" FOR SELECT TO authenticated '
            'USING ((SELECT auth.uid()) = "user_id");'
        ]
        # the open form is there only as a comment, with a warning right above it
        lines = fix.splitlines()
        opened = next(i for i, line in enumerate(lines) if "USING (true)" in line)
        assert lines[opened].startswith("-- CREATE POLICY")
        assert "opens the whole table" in lines[opened - 1]
    anon_fix = (await run_doctor(rt.dsn, "lab_notes", role="anon"))["row level security"].fix
    assert "everyone who has the project's anon key" in anon_fix
    await rt.execute(anon_fix)
    rows = await rt.execute("SELECT roles::text[], qual FROM pg_policies WHERE tablename = 'lab_notes'")
    assert rows == [(["authenticated"], "(( SELECT auth.uid() AS uid) = user_id)")]


async def test_a_table_without_an_owner_column_gets_no_runnable_policy(rt):
    await rt.execute("CREATE TABLE public.lab_open (id bigint PRIMARY KEY, body text)")
    await rt.execute("ALTER TABLE public.lab_open ENABLE ROW LEVEL SECURITY")
    await rt.execute("GRANT SELECT ON public.lab_open TO authenticated")
    fix = (await run_doctor(rt.dsn, "lab_open"))["row level security"].fix
    assert fix is not None
    assert all(line.startswith("--") for line in fix.splitlines())
    assert "name the column that holds the owner id" in fix
