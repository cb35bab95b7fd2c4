"""Real uvicorn processes on loopback for the tests that need one; each is stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

TEST_ENV = {
    "APP_ENV": "test",
    "SECRET_KEY": "test-secret-" + "z" * 40,
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_PARALLELISM": "1",
    "RATE_LIMIT": "0",  # many clients on one address; tests/test_limits.py covers the limit
    # Events between processes on PostgreSQL and MariaDB (SQLite keeps them in its file).
    "EVENT_BROKER_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


def database_env(url: str) -> dict[str, str]:
    """The environment that points a process at `url`: with TEST_DATABASE_POOLER=pgbouncer a
    PostgreSQL URL is PgBouncer's (tests/conftest.py), and the process is told so."""
    env = {"DATABASE_URL": url}
    if os.environ.get("TEST_DATABASE_POOLER") == "pgbouncer" and url.startswith("postgres"):
        env["DATABASE_POOLER"] = "transaction"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    database_url: str
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    # How the server is started: "uvicorn" (python -m uvicorn), "quill" (quill serve) or
    # "gunicorn" (gunicorn with uvicorn workers, as the deployment guide shows).
    launcher: str = "uvicorn"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "server:app", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--log-level", "warning",
        ]  # fmt: skip
        bin_dir = Path(sys.executable).parent
        if self.launcher == "quill":
            command = [
                str(bin_dir / "quill"),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ]
        elif self.launcher == "gunicorn":
            command = [
                str(bin_dir / "gunicorn"), "server:app", "-k", "uvicorn_worker.UvicornWorker",
                "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "10",
            ]  # fmt: skip
        env = {**os.environ, **TEST_ENV, **database_env(self.database_url), **self.env}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not become ready in {timeout}s: {self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the server (its own process group: uvicorn and its workers) and wait for it."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path and self.log_path.exists() else ""


@contextmanager
def running(database_url: str, **options: object) -> Iterator[Server]:
    server = Server(database_url, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
