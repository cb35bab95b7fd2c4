"""A PostgreSQL primary and a streaming replica of its own, for the replica tests.

The running PostgreSQL's pg_hba.conf refuses replication connections (and the tests must not edit
it), so the rig makes its own pair from the installed server binaries: `initdb` a primary under a
temporary directory on a free port, `pg_basebackup -R` a replica from it on another, both run as
the `postgres` user (PostgreSQL refuses to run as root). Both stop, by their PIDs, when the test
session ends; the directory goes with them. Durability is off (fsync): nothing here must outlive
the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.servers import free_port

_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 60
"""


class RigUnavailable(RuntimeError):
    """The server binaries or the `postgres` user are missing: the message says which."""


def bin_dir() -> Path:
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RigUnavailable(f"pg_config is not installed: {exc}") from exc
    directory = Path(found.stdout.strip())
    if not (directory / "initdb").exists():
        raise RigUnavailable(f"no initdb in {directory}: install the PostgreSQL server package")
    return directory


@dataclass
class Node:
    """One PostgreSQL server of the rig."""

    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def value(self, sql: str, database: str = "postgres") -> object:
        """The first column of the first row `sql` returns (None without one)."""
        conn = await asyncpg.connect(self.url(database), timeout=5)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    def run(self, sql: str, database: str = "postgres") -> object:
        """`value`, outside an event loop (the rig's set-up)."""
        return asyncio.run(self.value(sql, database))


class ReplicaRig:
    """`start()` makes and starts the pair; `stop()` stops both and removes their files."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="quill-replica-"))
        self.primary = Node(self.root / "primary", free_port())
        self.replica = Node(self.root / "replica", free_port())

    def start(self) -> None:
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres("initdb", "-D", self.primary.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._configure(self.primary)
        self.start_node(self.primary)
        self._as_postgres(
            "pg_basebackup", "-h", "127.0.0.1", "-p", self.primary.port, "-U", "postgres",
            "-D", self.replica.data, "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self._configure(self.replica)
        self.start_node(self.replica)

    def start_node(self, node: Node) -> None:
        self._as_postgres("pg_ctl", "-D", node.data, "-l", node.data / "log", "-w", "-t", "30", "start")

    def stop_node(self, node: Node) -> None:
        """Stop one server (fast shutdown) by the PID in its postmaster.pid, if it runs."""
        pid_file = node.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 2)  # SIGINT: PostgreSQL's fast shutdown
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.stop_node(self.replica)
        self.stop_node(self.primary)
        shutil.rmtree(self.root, ignore_errors=True)

    async def wait_replayed(self, within: float = 10) -> float:
        """Wait until the replica has replayed all the primary wrote; returns the seconds it took
        (from when the primary's position was read, on connections opened before)."""
        primary = await asyncpg.connect(self.primary.url(), timeout=5)
        replica = await asyncpg.connect(self.replica.url(), timeout=5)
        try:
            target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
            started = time.monotonic()
            while time.monotonic() - started < within:
                if await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target):
                    return time.monotonic() - started
                await asyncio.sleep(0.0005)
            raise TimeoutError(f"the replica did not replay {target} in {within}s")
        finally:
            await primary.close()
            await replica.close()

    def _configure(self, node: Node) -> None:
        sockets = self.root / "sockets"
        sockets.mkdir(exist_ok=True)
        shutil.chown(sockets, "postgres", "postgres")
        with open(node.data / "postgresql.conf", "a") as conf:
            conf.write(_SETTINGS.format(port=node.port, sockets=sockets))

    def _as_postgres(self, program: str, *arguments: object) -> None:
        command = [str(self.bin / program), *map(str, arguments)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")


@contextlib.contextmanager
def replica_rig() -> Iterator[ReplicaRig]:
    rig = ReplicaRig()
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()
