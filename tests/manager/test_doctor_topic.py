"""``await manager.doctor(topic=...)``: what Realtime Authorization lets a role and user do on a private
Broadcast/Presence topic, against the Harmony schema's membership policies on a real LocalRealtime, and
checked against what an unmodified realtime-py client gets when it joins with ``private: true``."""

from __future__ import annotations

from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from harmony_lab.local.schema import ALICE, BOB, CAROL, DM_ALICE_BOB
from harmony_lab.manager._doctor import run_topic_doctor
from tests.demo.plain_text import not_plain
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, stays

pytestmark = REALTIME_PY_DEPRECATIONS

DM = "dm:alice-bob"
ANSWERS = ("read broadcast", "write broadcast", "read presence", "track presence")


def answers(report: Any) -> dict[str, bool | None]:
    return {name: report.allowed(name) for name in ANSWERS}


def runnable(fix: str) -> list[str]:
    return [line for line in fix.splitlines() if not line.startswith("--")]


async def test_a_member_of_a_dm_may_read_and_write_it(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    report = await mgr.doctor(topic=DM)  # the manager's own token: alice
    assert report.user_id == str(ALICE)
    assert report.role == "authenticated"
    assert answers(report) == dict.fromkeys(ANSWERS, True)
    assert report.ok
    assert report.fixes == ""
    assert report["row level security"].ok
    assert {p.name: p.command for p in report.policies} == {
        "harmony_members_receive": "SELECT",
        "harmony_members_send": "INSERT",
    }
    send = next(p for p in report.policies if p.name == "harmony_members_send")
    assert send.using is None
    assert "is_topic_member(realtime.topic())" in send.with_check
    assert report.policies[0].roles == ("authenticated",)
    md = report._repr_markdown_()
    assert "| read broadcast | yes |" in md
    assert "| harmony_members_receive | SELECT | authenticated |" in md
    assert "read broadcast yes, write broadcast yes, read presence yes, track presence yes" in repr(report)
    # the same answers for bob through user_id= and through token=
    assert answers(await mgr.doctor(topic=DM, user_id=BOB)) == dict.fromkeys(ANSWERS, True)
    assert answers(await mgr.doctor(topic=DM, token=rt.token_for(str(BOB)))) == dict.fromkeys(ANSWERS, True)
    # a realtime: prefix is the channel name, not the topic the policies see
    assert (await mgr.doctor(topic=f"realtime:{DM}")).topic == DM


async def test_a_non_member_is_refused_with_a_fix_that_names_the_refusing_policy(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    report = await mgr.doctor(topic=DM, user_id=CAROL)
    assert answers(report) == dict.fromkeys(ANSWERS, False)
    assert not report.ok
    read = report["read broadcast"]
    assert "harmony_members_receive refuses it for this user" in read.detail
    assert "harmony_members_receive applies to authenticated" in read.fix
    assert "make the user a member" in read.fix
    # a policy already decides membership: nothing in the fix runs by itself (no duplicate policy,
    # no opening of the topic); the per-user and open forms are there only as comments
    assert runnable(report.fixes) == []
    assert f"(SELECT auth.uid()) = '{CAROL}'::uuid" in read.fix
    lines = read.fix.splitlines()
    opened = next(i for i, line in enumerate(lines) if "realtime_open_read_dm:alice-bob" in line)
    assert "this opens the topic to all of them" in lines[opened - 1]
    assert "| read broadcast | no |" in report._repr_markdown_()
    assert not_plain(repr(report)) == []
    assert not_plain(report._repr_markdown_()) == []
    # following the advice (make carol a member) admits her
    await rt.execute(
        "insert into public.channel_members (channel_id, user_id) values (%s, %s)", DM_ALICE_BOB, CAROL
    )
    assert answers(await mgr.doctor(topic=DM, user_id=CAROL)) == dict.fromkeys(ANSWERS, True)


async def test_the_anon_key_is_refused_and_told_that_opening_means_everyone(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    report = await mgr.doctor(topic=DM)  # no user token: the anon key's role
    assert report.role == "anon"
    assert report.user_id is None
    assert answers(report) == dict.fromkeys(ANSWERS, False)
    assert report.policies == ()  # Harmony's policies are for authenticated only
    assert "no SELECT policy on realtime.messages applies to anon" in report["read broadcast"].detail
    fix = report["read broadcast"].fix
    assert "anon carries no user id" in fix
    assert "everyone who has the project's anon key" in fix
    assert runnable(report.fixes) == []
    assert "| track presence | no |" in report._repr_markdown_()


async def test_a_select_only_policy_reads_yes_and_writes_no(rt, make_manager):
    topic = "lab:announcements"
    await rt.execute(
        "create policy lab_read_announcements on realtime.messages for select to authenticated "
        "using ((select realtime.topic()) = 'lab:announcements')"
    )
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    report = await mgr.doctor(topic=topic, user_id=ALICE)
    assert answers(report) == {
        "read broadcast": True,
        "write broadcast": False,
        "read presence": True,
        "track presence": False,
    }
    assert "allowed by harmony_members_receive, lab_read_announcements" in report["read broadcast"].detail
    assert "harmony_members_send refuses it" in report["write broadcast"].detail
    assert {c.name for c in report.problems} == {"write broadcast", "track presence"}
    assert "FOR INSERT" in report["write broadcast"].fix
    assert "WITH CHECK" in report["write broadcast"].fix


async def test_a_role_without_policies_gets_a_runnable_membership_policy_that_works(rt, make_manager):
    role = 'lab "members"'
    quoted = '"lab ""members"""'
    await rt.execute(f"create role {quoted} nologin")
    await rt.execute(f"grant usage on schema realtime, public to {quoted}")
    await rt.execute(f"grant select, insert on realtime.messages to {quoted}")
    await rt.execute(f"grant execute on function auth.uid() to {quoted}")
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    report = await mgr.doctor(topic=DM, role=role, user_id=ALICE)
    assert report.role == role
    assert report.policies == ()
    assert answers(report) == dict.fromkeys(ANSWERS, False)
    statements = runnable(report.fixes)
    # one membership policy per action, for both extensions; nothing else runs
    assert len(statements) == 2
    assert all(f"TO {quoted}" in s and "is_topic_member" in s for s in statements)
    assert all("extension IN ('broadcast', 'presence')" in s for s in statements)
    assert report["read broadcast"].fix == report["read presence"].fix
    for statement in statements:
        await rt.execute(statement)
    assert answers(await mgr.doctor(topic=DM, role=role, user_id=ALICE)) == dict.fromkeys(ANSWERS, True)
    # membership scoped: a non-member with the same role is still refused
    assert answers(await mgr.doctor(topic=DM, role=role, user_id=CAROL)) == dict.fromkeys(ANSWERS, False)


async def test_missing_grants_rls_off_and_bypass_are_reported(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    await rt.execute("create role lab_nogrant nologin")
    report = await mgr.doctor(topic=DM, role="lab_nogrant", user_id=ALICE)
    assert not report["grants"].ok
    assert 'GRANT SELECT ON realtime.messages TO "lab_nogrant";' in report["grants"].fix
    assert "the grants above are missing" in report["read broadcast"].detail
    service = await mgr.doctor(topic=DM, token=rt.service_role_key)
    assert service.role == "service_role"
    assert "bypasses row level security" in service["role"].detail
    assert answers(service) == dict.fromkeys(ANSWERS, True)
    missing = await mgr.doctor(topic=DM, role="no_such_role", user_id=ALICE)
    assert not missing["role"].ok
    assert missing.allowed("read broadcast") is None
    await rt.execute("alter table realtime.messages disable row level security")
    off = await mgr.doctor(topic=DM, user_id=CAROL)
    assert not off["row level security"].ok
    assert off["row level security"].fix == "ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;"
    assert answers(off) == dict.fromkeys(ANSWERS, True)


async def test_a_slow_policy_is_bounded_by_the_statement_timeout(rt):
    await rt.execute(
        "create policy lab_slow on realtime.messages for select to authenticated "
        "using ((select realtime.topic()) = 'lab:slow' and pg_sleep(3) is not null)"
    )
    report = await run_topic_doctor(
        rt.dsn, "lab:slow", role="authenticated", claims={"sub": str(ALICE)}, statement_timeout_s=0.3
    )
    assert report.allowed("read broadcast") is False
    assert "statement timeout" in report["read broadcast"].detail
    assert report["read broadcast"].mark == "no"
    assert report.allowed("write broadcast") is False  # the INSERT policy (membership) answers quickly


async def test_arguments_are_checked_with_clear_errors(make_manager):
    # every argument is checked before anything connects: no stack needed
    mgr = make_manager("http://127.0.0.1:9", "anon-key", dsn="postgresql://nobody@127.0.0.1:9/none")
    a_token = "e30.eyJzdWIiOiAieCJ9.sig"  # JWT-shaped: {} . {"sub": "x"} . sig
    with pytest.raises(TypeError, match="not both and not neither"):
        await mgr.doctor("messages", topic=DM)
    with pytest.raises(TypeError, match="not both and not neither"):
        await mgr.doctor()
    with pytest.raises(TypeError, match="user_id= and token= are for doctor"):
        await mgr.doctor("messages", user_id=ALICE)
    with pytest.raises(TypeError, match="not both"):
        await mgr.doctor(topic=DM, user_id=ALICE, token=a_token)
    with pytest.raises(ValueError, match="must be a uuid"):
        await mgr.doctor(topic=DM, user_id="alice")
    with pytest.raises(ValueError, match="must be a JWT"):
        await mgr.doctor(topic=DM, token="not-a-token")
    with pytest.raises(ValueError, match="1 to 1024 characters"):
        await mgr.doctor(topic="x" * 1025)
    with pytest.raises(TypeError, match="topic must be a non-empty string"):
        await mgr.doctor(topic=5)
    with pytest.raises(TypeError, match="user_id must be a uuid or its string"):
        await mgr.doctor(topic=DM, user_id=12)
    with pytest.raises(TypeError, match="schema= is for doctor"):
        await mgr.doctor(topic=DM, schema="realtime")


# ---------------------------------------------------------------------------------------------
# the doctor's answers against a real client's experience


async def join_private(rt: Any, sub: str | None, topic: str) -> tuple[Any, Any, list[Any], list[Any]]:
    client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
    await client.connect()
    if sub is not None:
        await client.set_auth(rt.token_for(sub))
    states: list[Any] = []
    got: list[Any] = []
    key = sub or "anon"
    ch = client.channel(topic, {"config": {"private": True, "presence": {"key": key, "enabled": True}}})
    ch.on_broadcast("*", got.append)
    await ch.subscribe(lambda s, e: states.append(s))
    await eventually(lambda: states, what=f"a subscribe state for {topic}")
    return client, ch, states, got


@pytest.mark.parametrize(
    ("topic", "setup", "readers"),
    [
        (DM, None, {str(ALICE), str(BOB)}),
        (
            "lab:announcements",
            "create policy lab_read_announcements on realtime.messages for select to authenticated "
            "using ((select realtime.topic()) = 'lab:announcements')",
            {str(ALICE), str(BOB), str(CAROL)},
        ),
    ],
)
async def test_the_answers_agree_with_what_realtime_py_gets(rt, make_manager, topic, setup, readers):
    if setup:
        await rt.execute(setup)
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    clients: list[Any] = []
    try:
        joined: dict[str | None, tuple[Any, list[Any]]] = {}
        for sub in (str(ALICE), str(BOB), str(CAROL), None):
            report = await mgr.doctor(topic=topic, user_id=sub) if sub else await mgr.doctor(topic=topic)
            client, ch, states, got = await join_private(rt, sub, topic)
            clients.append(client)
            subscribed = states[0] is RealtimeSubscribeStates.SUBSCRIBED
            can_join = bool(report.allowed("read broadcast") or report.allowed("read presence"))
            assert subscribed == can_join, (sub, states, repr(report))
            if subscribed:
                joined[sub] = (ch, got)
            assert states[0] in (RealtimeSubscribeStates.SUBSCRIBED, RealtimeSubscribeStates.CHANNEL_ERROR)
        assert set(joined) == readers
        alice_report = await mgr.doctor(topic=topic, user_id=ALICE)
        (alice_ch, _), (_, bob_got) = joined[str(ALICE)], joined[str(BOB)]
        await alice_ch.send_broadcast("hello", {"n": 1})
        if alice_report.allowed("write broadcast"):
            await eventually(lambda: len(bob_got) == 1, what="alice's broadcast at bob")
        else:
            await stays(lambda: len(bob_got), 0, for_s=1.0, what="a refused broadcast")
        await alice_ch.track({"who": "alice"})

        def tracked() -> bool:
            return str(ALICE) in rt.server.registry.presence_state((f"realtime:{topic}", True))

        if alice_report.allowed("track presence"):
            await eventually(tracked, what="alice's presence on the server")
        else:
            await stays(tracked, False, for_s=1.0, what="a refused track")
    finally:
        for client in clients:
            await client.close()


async def test_a_connection_that_cannot_probe_says_so_instead_of_answering_no(rt):
    import psycopg

    await rt.execute("create role lab_doctor login password 'lab-doctor-pw' nobypassrls")
    await rt.execute("grant usage on schema realtime to lab_doctor")
    await rt.execute("grant select, insert on realtime.messages to lab_doctor")
    params = psycopg.conninfo.conninfo_to_dict(rt.dsn)
    weak = psycopg.conninfo.make_conninfo(**{**params, "user": "lab_doctor", "password": "lab-doctor-pw"})
    report = await run_topic_doctor(weak, DM, role="authenticated", claims={"sub": str(ALICE)})
    assert answers(report) == dict.fromkeys(ANSWERS, None)
    read = report["read broadcast"]
    assert read.mark == "FAIL"
    assert "could not be computed: the doctor's own connection may not insert the probe rows" in read.detail
    assert "take the role authenticated" in report["write broadcast"].detail
    assert "not every answer could be computed" in repr(report)
    assert report.fixes == ""


async def test_a_hostile_topic_is_quoted_in_every_suggestion(rt, make_manager):
    topic = "room:x'); DROP TABLE public.messages; --\""
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    report = await mgr.doctor(topic=topic)
    assert answers(report) == dict.fromkeys(ANSWERS, False)
    lines = report["read broadcast"].fix.splitlines()
    opened = next(i for i, line in enumerate(lines) if "this opens the topic" in line)
    await rt.execute(lines[opened + 1].removeprefix("-- "))  # the user chooses to open it to anon
    rows = await rt.execute("select to_regclass('public.messages') is not null")
    assert rows == [(True,)]
    after = await mgr.doctor(topic=topic)
    assert after.allowed("read broadcast") is True
    assert after.allowed("write broadcast") is False
    # scoped to exactly that topic: another topic stays closed to anon
    assert (await mgr.doctor(topic="room:x")).allowed("read broadcast") is False
    with pytest.raises(ValueError, match="NUL"):
        await mgr.doctor(topic="room:\x00")
