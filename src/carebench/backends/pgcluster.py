"""A throwaway local PostgreSQL cluster: what `carebench db up` / `db down` run, and what the
test suite starts its postgres tests against.

The cluster lives in one directory: `data/` (initdb's), the server's log, its unix socket and
a `dsn` file. It listens on 127.0.0.1 only, on a port that was free at start, with trust
authentication (initdb's host rules cover loopback only), so the printed DSN needs no password.
initdb refuses to run as root, so as root every step runs as the `postgres` system user and the
directory belongs to it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from carebench.backends.base import backend_class
from carebench.backends.config import BackendConfig
from carebench.backends.dsn import dsn_parts
from carebench.errors import BackendUnavailable

#: Where distributions put the server binaries (Debian/Ubuntu: one directory per major version).
BINARY_DIRECTORIES = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = (
    "install them with: apt-get install postgresql (Debian/Ubuntu; dnf install "
    "postgresql-server on Fedora), or put initdb and pg_ctl on PATH"
)
#: The superuser initdb creates, and the system user the cluster runs as under root.
SUPERUSER = "postgres"
DATABASE = "carebench"
#: Enough for the default --db-pool-size (100) twice over: the start-up probe's pool closes
#: just before the server's opens, and tests watch pg_stat_activity on their own connection.
MAX_CONNECTIONS = 250
START_TIMEOUT = 60
_PORT_ATTEMPTS = 3


class ClusterError(BackendUnavailable):
    """The local cluster cannot be created, started or stopped; the message says what to do."""


def find_binaries() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, else the newest of
    /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    installed = Path("/").glob(BINARY_DIRECTORIES.lstrip("/"))
    candidates += sorted(installed, key=_major_version, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise ClusterError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        f"{BINARY_DIRECTORIES}: {INSTALL_HINT}"
    )


def _major_version(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def running_as_root() -> bool:
    return os.geteuid() == 0


def default_directory() -> Path:
    """carebench/postgres in the user cache directory; under root, in the postgres user's,
    since the cluster runs as that user and root's home is private."""
    if running_as_root():
        return Path(_owner_account().pw_dir) / ".cache" / "carebench" / "postgres"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "carebench" / "postgres"


def _owner_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ClusterError(
            f"initdb refuses to run as root and there is no {SUPERUSER!r} system user to run "
            f"it as: install the postgresql package (it creates one) or run as an ordinary user"
        ) from None


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class LocalCluster:
    """One throwaway cluster in `directory`."""

    directory: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def dsn_file(self) -> Path:
        return self.directory / "dsn"

    @property
    def settings_file(self) -> Path:
        return self.data / "carebench.conf"

    def exists(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def dsn(self) -> str:
        """The DSN written when the cluster was created."""
        return self.dsn_file.read_text().strip()

    def create(self) -> None:
        """initdb into `directory` (created, owned by the cluster's user)."""
        self._run("mkdir", "-p", str(self.directory))
        if running_as_root():  # an empty directory made by root (e.g. tempfile.mkdtemp)
            owner = _owner_account()
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self._run(
            str(find_binaries() / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
            # Throwaway data: no fsync of the fresh cluster (seconds saved on every test run).
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'carebench.conf'\n")

    def start(self) -> None:
        """Start the server (on a new free port the first time, on the same one after)."""
        if self.running():
            return
        for _ in range(_PORT_ATTEMPTS):
            if not self.settings_file.exists():
                self._configure(free_port())
            if self._pg_ctl("start", "-l", str(self.log), "-t", str(START_TIMEOUT)) == 0:
                return
            if "could not bind" not in self._log_tail():
                break
            self.settings_file.unlink()  # the port was taken in between: pick another
        raise ClusterError(
            f"PostgreSQL did not start in {self.directory}; its log ends with:\n{self._log_tail()}"
        )

    def _configure(self, port: int) -> None:
        self.settings_file.write_text(
            f"listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{self.directory}'\n"
            f"max_connections = {MAX_CONNECTIONS}\n"
        )
        self.dsn_file.write_text(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}\n")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m `mode` (fast: disconnect clients; immediate: like a crash)."""
        if self.running():
            self._pg_ctl("stop", "-m", mode, "-t", str(START_TIMEOUT))

    def running(self) -> bool:
        return self.exists() and self._pg_ctl("status") == 0

    def create_database(self) -> None:
        """CREATE DATABASE carebench, unless it exists."""
        port = str(dsn_parts(self.dsn()).port)
        createdb = str(find_binaries() / "createdb")
        created = subprocess.run(
            [createdb, "--host", "127.0.0.1", "--port", port, "--username", SUPERUSER, DATABASE],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise ClusterError(f"createdb {DATABASE} failed: {created.stderr.strip()}")

    def remove(self) -> None:
        shutil.rmtree(self.directory)

    def _pg_ctl(self, action: str, *args: str) -> int:
        command = [str(find_binaries() / "pg_ctl"), action, "--pgdata", str(self.data), *args]
        return self._run(*command, check=False).returncode

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        program = Path(command[0]).name
        if running_as_root():
            _owner_account()
            if shutil.which("runuser") is None:
                raise ClusterError(
                    f"as root, carebench runs PostgreSQL as the {SUPERUSER!r} user with runuser, "
                    "which is missing: install util-linux, or run as an ordinary user"
                )
            command = ("runuser", "-u", SUPERUSER, "--", *command)
        done = subprocess.run(
            command,
            # The server's user may not be allowed into the caller's working directory.
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
            # Its own session: a Ctrl-C meant for carebench must not reach the server.
            start_new_session=True,
        )
        if check and done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            raise ClusterError(f"{program} failed: {output}")
        return done

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True, slots=True)
class StartedCluster:
    """What `up` leaves running: where to connect, and how many patients are there."""

    dsn: str
    patients: int


def up(directory: Path, patients: int) -> StartedCluster:
    """Create (if needed), start and seed the cluster in `directory`."""
    find_binaries()
    cluster = LocalCluster(directory)
    if not cluster.exists():
        if directory.exists() and any(directory.iterdir()):
            raise ClusterError(
                f"{directory} exists and is not a carebench cluster: choose another --dir"
            )
        cluster.create()
    cluster.start()
    cluster.create_database()
    dsn = cluster.dsn()
    seeded = asyncio.run(backend_class("postgres").seed(BackendConfig("postgres", dsn), patients))
    return StartedCluster(dsn, seeded)


def down(directory: Path) -> bool:
    """Stop the cluster in `directory` and remove the directory; False when there was none."""
    cluster = LocalCluster(directory)
    if not directory.exists():
        return False
    if not cluster.exists() and not cluster.dsn_file.exists():
        raise ClusterError(f"{directory} is not a carebench cluster: not removing it")
    cluster.stop("fast")
    cluster.remove()
    return True
