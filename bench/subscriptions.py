"""How many subscribers one server holds, and how fast an event reaches the last of them
(`make bench-subscriptions`).

On loopback, PostgreSQL with Redis Streams (the production set-up of the README): for each N,
a fresh server (one process, then two behind the broker) and N WebSocket clients
(graphql-transport-ws, Node `ws`, in one client process: bench/ws-load/) that each
subscribe to `postCreated { id title author { username } }`. Then EVENTS posts are created one
by one over HTTP, and for each the time from its commit (the post's datePosted, which the server
stamps in the mutation's transaction just before the commit) to every delivery is recorded. Printed, and written to bench/results/subscriptions.md:

- delivery latency p50 and p99 over every delivery, and the p99 of each event's last delivery;
- server CPU seconds per 1,000 deliveries (user + system of the server processes, /proc);
- resident memory per subscriber (server RSS with N subscribers minus before, over N).
Statements per event are not measured here but counted in tests/test_event_streams.py (one per
document and kind of viewer, whatever the number of subscribers).

The load client shares the machine's cores with the server: its own reading time is inside the
latencies, so they are upper bounds (Node's `ws` reads a frame for a fraction of the CPU Python's
`websockets` needs, which, as the client, took most of a core from the server). Sends traffic to 127.0.0.1 only and stops by itself.

    python bench/subscriptions.py                 # N = 1,000, 5,000 and 10,000
    python bench/subscriptions.py --sizes 1000    # one size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "bench_subscriptions"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/0"
EVENTS = 20
SUBSCRIPTION = "subscription { postCreated { id title author { username } } }"
CREATE_POST = """mutation ($input: CreatePostInput!) { createPost(input: $input) {
  __typename ... on PostPayload { post { datePosted } } } }"""
REGISTER = """mutation ($input: RegisterInput!) { register(input: $input) {
  ... on AuthPayload { accessToken } } }"""


# The server.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "EVENT_BROKER_URL": REDIS_URL,
        "SECRET_KEY": "bench-secret-" + "s" * 40,
        "APP_ENV": "production",
        "LOG_LEVEL": "WARNING",
        "METRICS": "0",
        "RATE_LIMIT": "0",
        "WS_MAX_SUBSCRIPTIONS_PER_CLIENT": "100000",  # every client is 127.0.0.1 here
        "WS_MAX_SUBSCRIPTIONS": "100000",
        "SUBSCRIPTION_QUEUE_SIZE": "1000",
    }


def reset_database() -> None:
    for statement in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", PG_ADMIN, "-qc", statement], check=True, capture_output=True)
    quill = Path(sys.executable).parent / "quill"
    subprocess.run([str(quill), "migrate"], env=environment(), check=True, capture_output=True)


@dataclass
class Server:
    workers: int
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        quill = Path(sys.executable).parent / "quill"  # as the README runs it
        command = [str(quill), "serve", "--port", str(self.port), "--workers", str(self.workers)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    time.sleep(1 if self.workers == 1 else 3)  # every worker up
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None

    def pids(self) -> list[int]:
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [self.process.pid, *(int(pid) for pid in children)]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


# The load client: one Node process holding every connection (bench/ws-load/subscribers.mjs).

LOAD_CLIENT = ROOT / "bench" / "ws-load"


def install_load_client() -> None:
    if not (LOAD_CLIENT / "node_modules" / "ws").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=LOAD_CLIENT, check=True)


def _many_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))


class Clients:
    def __init__(self, url: str, total: int) -> None:
        self.child = subprocess.Popen(
            ["node", str(LOAD_CLIENT / "subscribers.mjs"), url, str(total), SUBSCRIPTION],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_many_files,
        )

    def wait_ready(self) -> None:
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"the load client failed: {line!r}")

    def cpu_seconds(self) -> float:
        return cpu_seconds([self.child.pid])

    def arrivals(self) -> list[list[float]]:
        output, _ = self.child.communicate(timeout=120)
        arrivals: list[list[float]] = json.loads(output.strip().splitlines()[-1])
        return arrivals


# One measurement.


@dataclass
class Result:
    subscribers: int
    workers: int
    p50_ms: float
    p99_ms: float
    last_p99_ms: float
    delivered: int
    expected: int
    cpu_per_1k: float
    client_cpu_per_1k: float
    rss_per_subscriber_kib: float


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(subscribers: int, workers: int) -> Result:
    reset_database()
    server = Server(workers)
    server.start()
    try:
        author = register(server.url)
        rss_before = server.rss_bytes()
        clients = Clients(server.url, subscribers)
        clients.wait_ready()
        time.sleep(2)  # the last subscribe messages reach their groups
        create_post(server.url, author, "warm-up")
        time.sleep(3)
        rss_after = server.rss_bytes()
        cpu_before, client_cpu_before = server.cpu_seconds(), clients.cpu_seconds()
        sent = []
        for i in range(EVENTS):
            sent.append(create_post(server.url, author, f"event {i}"))
            time.sleep(max(1.0, subscribers / 5000))
        time.sleep(3)
        cpu = server.cpu_seconds() - cpu_before
        client_cpu = clients.cpu_seconds() - client_cpu_before
        arrivals = clients.arrivals()
    finally:
        server.stop()
    latencies, lasts, delivered = [], [], 0
    for event, start in enumerate(sent, start=1):  # index 0 is the warm-up
        times = [own[event] for own in arrivals if len(own) > event]
        delivered += len(times)
        latencies += [(t - start) * 1000 for t in times]
        if times:
            lasts.append((max(times) - start) * 1000)
    return Result(
        subscribers=subscribers,
        workers=workers,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        last_p99_ms=percentile(lasts, 0.99),
        delivered=delivered,
        expected=subscribers * EVENTS,
        cpu_per_1k=cpu / (delivered / 1000),
        client_cpu_per_1k=client_cpu / (delivered / 1000),
        rss_per_subscriber_kib=(rss_after - rss_before) / subscribers / 1024,
    )


def register(url: str) -> str:
    variables = {"input": {"username": "bench", "email": "bench@example.com", "password": "p" * 16}}
    body = httpx.post(f"{url}/graphql", json={"query": REGISTER, "variables": variables}, timeout=30).json()
    return str(body["data"]["register"]["accessToken"])


def create_post(url: str, token: str, title: str) -> float:
    """Posts; when, in seconds since the epoch, the server stamped the post (in the mutation's
    transaction, just before its commit: the moment the latencies are counted from)."""
    variables = {"input": {"title": title, "content": "bench"}}
    response = httpx.post(
        f"{url}/graphql",
        json={"query": CREATE_POST, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    written = response.json()["data"]["createPost"]
    assert written["__typename"] == "PostPayload", response.text
    return datetime.fromisoformat(written["post"]["datePosted"]).timestamp()


def table(results: list[Result]) -> str:
    lines = [
        "| subscribers | server processes | delivery p50 | delivery p99 | last delivery p99 "
        "| delivered | CPU s / 1k deliveries | load client's | RSS / subscriber |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.subscribers:,} | {r.workers} | {r.p50_ms:.0f} ms | {r.p99_ms:.0f} ms "
            f"| {r.last_p99_ms:.0f} ms | {r.delivered:,}/{r.expected:,} | {r.cpu_per_1k:.3f} | {r.client_cpu_per_1k:.3f} "
            f"| {r.rss_per_subscriber_kib:.0f} KiB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    arguments = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    install_load_client()
    results = []
    for workers in arguments.workers:
        for size in arguments.sizes:
            result = measure(size, workers)
            print(table([result]).splitlines()[-1], flush=True)
            results.append(result)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = (
        f"# Subscriptions ({time.strftime('%Y-%m-%d %H:%M')}, {machine})\n\n"
        f"PostgreSQL 15 + Redis Streams, {EVENTS} events per row, postCreated, the load client (Node `ws`) on the same machine.\n\n"
        + table(results)
        + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "subscriptions.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
