"""A real PgBouncer in transaction mode in front of the test PostgreSQL, on a port of its own.

Started from the Debian package's binary (scripts/install-test-deps installs it) as the
`postgres` user (PgBouncer refuses to run as root), with a small server pool so that client
connections really do share server connections between transactions: a named prepared statement
or a session setting that leaked would meet another client. Stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.servers import free_port

_CONFIG = """
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = 1000
max_db_connections = {pool}
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
"""


class PgBouncerMissing(RuntimeError):
    """PgBouncer is not installed: the message says how to install it."""


class PgBouncer:
    def __init__(self, server_url: str, pool_size: int = 4) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise PgBouncerMissing("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.binary = binary
        self.server = make_url(server_url)
        self.port = free_port()
        self.pool_size = pool_size
        self.root = Path(tempfile.mkdtemp(prefix="quill-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """A plain URL to `database` through the bouncer, as the server's URL names its user."""
        user = self.server.username or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        config = self.root / "pgbouncer.ini"
        config.write_text(
            _CONFIG.format(
                host=self.server.host or "127.0.0.1",
                port=self.server.port or 5432,
                listen=self.port,
                root=self.root,
                pool=self.pool_size,
            )
        )
        users = {self.server.username or "postgres", "postgres", "root"}
        (self.root / "users.txt").write_text("".join(f'"{user}" ""\n' for user in sorted(users)))
        command = [self.binary, str(config)]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            for path in self.root.iterdir():
                shutil.chown(path, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.root / "pgbouncer.log").read_text() if (self.root / "pgbouncer.log").exists() else ""
        self.stop()
        raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}")

    def stop(self) -> None:
        pid_file = self.root / "pgbouncer.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)  # its immediate shutdown
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def pgbouncer(server_url: str, pool_size: int = 4) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(server_url, pool_size)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
