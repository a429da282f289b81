"""A stranger on the same machine cannot reach the embedded PostgreSQL.

The attack: another local user connects to 127.0.0.1:<port> (or the Unix socket) as ``postgres`` and
runs ``COPY … TO PROGRAM`` — a shell as the server's user. With ``trust`` authentication that needed
no password at all. The stranger here is a process switched to an unused uid running ``psql``.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harmony_lab.local import LocalPostgres
from tests.ordinary_user import STACK_PACKAGES, run_as_ordinary_user

PSQL = shutil.which("psql")
ATTACK = "COPY (SELECT 1) TO PROGRAM 'id'"
GUESSES = ["", "postgres", "password", "harmony", "root"]

pytestmark = pytest.mark.skipif(PSQL is None, reason="psql (postgresql-client) is not installed")


def _as_stranger(
    uid: int, args: list[str], password: str | None = None, command: str = ATTACK
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PGCONNECT_TIMEOUT": "5"}
    if password is not None:
        env["PGPASSWORD"] = password
    assert PSQL is not None
    return subprocess.run(
        [PSQL, "-X", "-w", *args, "-c", command],
        env=env, capture_output=True, text=True, timeout=30,
        user=uid, group=uid, extra_groups=[], cwd="/",
    )  # fmt: skip


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hl-sec-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_stranger_cannot_connect_over_tcp_with_or_without_a_password(postgres, other_uid) -> None:
    tcp = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-d", "postgres"]
    refused = _as_stranger(other_uid, tcp)
    assert refused.returncode != 0, f"connected without a password: {refused.stdout}"
    assert "no password supplied" in refused.stderr, refused.stderr
    for guess in GUESSES:
        out = _as_stranger(other_uid, tcp, password=guess)
        assert out.returncode != 0, f"password guess {guess!r} let a stranger in: {out.stdout}"
        assert "password authentication failed" in out.stderr or "no password" in out.stderr, out.stderr
    # the DSN the stack hands out is what works: the owner's client gets in
    with psycopg.connect(postgres.dsn, connect_timeout=10) as c:
        assert c.execute("SELECT current_user").fetchone() == ("postgres",)


def test_a_stranger_gets_no_replication_connection_and_the_owner_does(postgres, other_uid) -> None:
    # a logical replication connection streams every committed row of every table: the same rules
    # hold for it (the server's change capture uses exactly this, with the DSN's password)
    conninfo = f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres replication=database"
    for guess in (None, *GUESSES):
        out = _as_stranger(other_uid, [conninfo], password=guess, command="IDENTIFY_SYSTEM")
        assert out.returncode != 0, f"replication connection with {guess!r}: {out.stdout}"
        assert "no password supplied" in out.stderr or "password authentication failed" in out.stderr, (
            out.stderr
        )
    with psycopg.connect(postgres.dsn, replication="database", autocommit=True, connect_timeout=10) as c:
        result = c.pgconn.exec_(b"IDENTIFY_SYSTEM")  # replication commands take the simple protocol
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
        assert result.get_value(0, 3) == b"postgres"  # dbname: a logical (database) replication session


def test_a_stranger_cannot_reach_the_unix_socket(postgres, other_uid) -> None:
    socket_dir = postgres.socket_dir
    mode = stat.S_IMODE(socket_dir.stat().st_mode)
    assert mode == 0o700, f"socket directory {socket_dir} is {oct(mode)}"
    out = _as_stranger(other_uid, ["-h", str(socket_dir), "-p", str(postgres.port), "-U", "postgres"])
    assert out.returncode != 0, f"connected over the socket: {out.stdout}"
    assert "Permission denied" in out.stderr or "No such file" in out.stderr, out.stderr


def test_only_scram_over_loopback_is_configured(postgres) -> None:
    with postgres.connect() as c:
        rules = c.execute("SELECT type, address, auth_method, error FROM pg_hba_file_rules").fetchall()
        listen = c.execute("SHOW listen_addresses").fetchone()
        verifier = c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
    assert rules, "no pg_hba rules"
    assert {r[2] for r in rules} == {"scram-sha-256"}, rules
    assert all(r[3] is None for r in rules), rules
    assert {r[1] for r in rules if r[0] == "host"} == {"127.0.0.1"}, rules
    assert listen == ("127.0.0.1",)
    assert verifier is not None
    assert verifier[0].startswith("SCRAM-SHA-256$")
    password = _password(postgres.dsn)
    assert len(password) >= 24
    assert password not in verifier[0]


def test_each_cluster_has_its_own_password() -> None:
    with LocalPostgres() as a, LocalPostgres() as b:
        assert _password(a.dsn) != _password(b.dsn)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(a.dsn.replace(f":{a.port}/", f":{b.port}/"), connect_timeout=10)


def test_an_old_trust_cluster_is_locked_and_a_persistent_password_survives_restarts(shared_dir) -> None:
    data = shared_dir / "data"
    with LocalPostgres(data) as pg:
        first = _password(pg.dsn)
    stored = data / "harmony_lab.password"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # a cluster from an older release: trust for everyone, no stored password
    (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    with LocalPostgres(data) as pg:
        assert _password(pg.dsn) == first  # clients holding the DSN reconnect after a restart
        bare = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with pytest.raises(psycopg.OperationalError, match=r"no password supplied|password authentication"):
            psycopg.connect(bare, connect_timeout=10)
        assert "trust" not in (data / "pg_hba.conf").read_text()
    stored.unlink()
    with LocalPostgres(data) as pg:
        assert _password(pg.dsn) != first
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"postgresql://postgres:{first}@127.0.0.1:{pg.port}/postgres")
        with psycopg.connect(pg.dsn, connect_timeout=10) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def _password(dsn: str) -> str:
    return dsn.split("://postgres:", 1)[1].split("@", 1)[0]


# --- the whole stack as an ordinary user ---------------------------------------------------

_STACK_AS_USER = """
import asyncio, json, os, psutil, urllib.parse, websockets
from harmony_lab.local import LocalRealtime
from harmony_lab.local.schema import ALICE, GENERAL

async def main():
    async with LocalRealtime() as rt:
        changes = [{"event": "INSERT", "schema": "public", "table": "messages"}]
        join = {"config": {"postgres_changes": changes}, "access_token": rt.token_for(str(ALICE))}
        url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
        async with websockets.connect(url) as ws, asyncio.timeout(60):
            frame = {"topic": "realtime:nonroot", "event": "phx_join", "payload": join, "ref": "1"}
            await ws.send(json.dumps(frame))
            while True:
                msg = json.loads(await ws.recv())
                if msg["event"] == "system" and msg["payload"].get("status") == "ok":
                    await rt.execute(
                        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
                        GENERAL, ALICE, "written as an ordinary user",
                    )
                elif msg["event"] == "system":
                    raise RuntimeError(msg)
                elif msg["event"] == "postgres_changes":
                    content = msg["payload"]["data"]["record"]["content"]
                    break
        out = {"uid": os.geteuid(), "server_user": psutil.Process(rt.postgres.pid).username(),
               "content": content, "dsn_has_password": bool(urllib.parse.urlsplit(rt.postgres.dsn).password)}
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.timeout(180)
def test_the_stack_streams_changes_for_an_ordinary_user() -> None:
    """As root the server runs as nobody (every stack test); here a throwaway user runs it all: SCRAM,
    the private socket, the replication stream and the websocket server with no privilege."""
    out, name = run_as_ordinary_user(_STACK_AS_USER, packages=STACK_PACKAGES, timeout=150)
    assert out == {
        "uid": out["uid"], "server_user": name,
        "content": "written as an ordinary user", "dsn_has_password": True,
    }  # fmt: skip
