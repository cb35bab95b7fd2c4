"""Load and faults against real uvicorn processes on loopback, each bounded in time: concurrent
writers lose nothing, a database outage is survived, a crash leaves nothing half done, SIGTERM
lets requests finish. Each test reports its figures at the end of the run (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import Note, Post, Task, table_of
from db.seed import Shape, generate
from settings import async_database_url
from tests.api import ADD_NOTE, CREATE_POST, CREATE_TASK, REGISTER, UPDATE_POST
from tests.conftest import RELIABILITY_REPORT, migrate
from tests.servers import Server, free_port

WRITERS = 50
WRITE_SECONDS = 8.0
posts, tasks, notes = table_of(Post), table_of(Task), table_of(Note)


@dataclass
class Tally:
    """What clients sent and what the server acknowledged."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    post_titles: dict[str, str] = field(default_factory=dict)  # acknowledged post -> last acknowledged title
    task_notes: dict[str, int] = field(default_factory=dict)  # acknowledged task -> acknowledged notes

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0

    async def send(
        self, client: httpx.AsyncClient, document: str, token: str | None = None, **variables: Any
    ) -> dict[str, Any] | None:
        """The payload of the mutation if the server acknowledged it; None (and a tally) otherwise."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        try:
            response = await client.post(
                "/graphql", json={"query": document, "variables": variables}, headers=headers
            )
        except httpx.HTTPError as exc:
            self.errors[f"transport: {type(exc).__name__}"] += 1
            return None
        finally:
            self.latencies.append(time.perf_counter() - started)
        if response.status_code >= 500:
            self.errors[f"HTTP {response.status_code}"] += 1
        if "database is locked" in response.text:
            self.errors["database is locked"] += 1
        body = response.json()
        for error in body.get("errors", []):
            self.errors[(error.get("extensions") or {}).get("code", error["message"])] += 1
        if response.status_code != 200 or "errors" in body:
            return None
        [payload] = body["data"].values()
        if payload.get("__typename", "").endswith("Error"):
            self.errors[payload["__typename"]] += 1
            return None
        return payload


async def _writer(client: httpx.AsyncClient, tally: Tally, name: str, deadline: float) -> None:
    account = await tally.send(
        client, REGISTER, input={"username": name, "email": f"{name}@example.com", "password": "x" * 12}
    )
    assert account is not None, tally.errors
    token = account["accessToken"]
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        if created := await tally.send(
            client, CREATE_POST, token, input={"title": f"{name} {round_}", "content": "load"}
        ):
            post_id = created["post"]["id"]
            tally.post_titles[post_id] = created["post"]["title"]
            if await tally.send(
                client, UPDATE_POST, token, id=post_id, input={"title": f"{name} {round_} edited"}
            ):
                tally.post_titles[post_id] = f"{name} {round_} edited"
        if task := await tally.send(
            client, CREATE_TASK, token, input={"title": f"task {round_}", "notes": ["a", "b"]}
        ):
            task_id = task["task"]["id"]
            tally.task_notes[task_id] = 2
            if await tally.send(client, ADD_NOTE, token, taskId=task_id, input={"body": "c"}):
                tally.task_notes[task_id] += 1


def _pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


async def _found(database_url: str) -> tuple[dict[int, str], dict[int, int]]:
    """What the database holds: post titles, and notes per task."""
    engine = create_async_engine(async_database_url(database_url))
    async with engine.connect() as conn:
        titles: dict[int, str] = dict((await conn.execute(select(posts.c.id, posts.c.title))).all())
        counted = select(tasks.c.id, func.count(notes.c.id)).outerjoin(notes, notes.c.task_id == tasks.c.id)
        task_notes: dict[int, int] = dict((await conn.execute(counted.group_by(tasks.c.id))).all())
    await engine.dispose()
    return titles, task_notes


@pytest.mark.one_path
async def test_concurrent_writers_lose_nothing(database_url: str, tmp_path: Path, engine_name: str) -> None:
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    tally = Tally()
    try:
        # An idle connection must expire on the client before uvicorn's 5 s keep-alive closes it,
        # or a request sent on it as the server closes it fails in transport (the classic race).
        limits = httpx.Limits(max_connections=WRITERS, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            deadline = time.monotonic() + WRITE_SECONDS
            await asyncio.gather(*(_writer(client, tally, f"writer{i}", deadline) for i in range(WRITERS)))
    finally:
        server.stop()
    titles, task_notes = await _found(database_url)

    acknowledged = len(tally.post_titles) * 2 + sum(tally.task_notes.values()) + len(tally.task_notes)
    found_writes = sum(1 for pk in map(_pk, tally.post_titles) if pk in titles)
    RELIABILITY_REPORT.append(
        f"concurrent writers, {engine_name}: {WRITERS} clients for {WRITE_SECONDS:g}s, {len(tally.latencies)} requests, "
        f"{acknowledged} writes acknowledged, posts found {found_writes}/{len(tally.post_titles)}, "
        f"tasks found {sum(1 for t in tally.task_notes if _pk(t) in task_notes)}/{len(tally.task_notes)}, "
        f"errors {dict(tally.errors) or 'none'}, p99 {tally.p99_ms:.0f} ms"
    )
    assert not tally.errors
    assert len(tally.post_titles) > WRITERS  # the run did real work
    assert {
        _pk(post): title for post, title in tally.post_titles.items()
    } == titles  # every edit kept, no extra rows
    assert {_pk(task): count for task, count in tally.task_notes.items()} == task_notes


# A PostgreSQL cluster of the test's own, to stop and start.


@dataclass
class Cluster:
    data: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.data / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's server programs (initdb, pg_ctl) are needed for the outage test")
    data = Path(tempfile.mkdtemp(prefix="quill-outage-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    running = Cluster(data=data, port=free_port(), bin=Path(found[-1]).parent)
    running._run(str(running.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    running.start()
    try:
        yield running
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(running.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


async def test_a_database_outage_fails_fast_and_recovers(cluster: Cluster, tmp_path: Path) -> None:
    migrate(cluster.url)
    server = Server(cluster.url, log_path=tmp_path / "uvicorn.log", env={"DB_CONNECT_TIMEOUT_SECONDS": "2"})
    server.start()
    tally = Tally()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            token = await tally.send(
                client, REGISTER, input={"username": "ada", "email": "ada@example.com", "password": "x" * 12}
            )
            assert token is not None
            assert await tally.send(
                client, CREATE_POST, token["accessToken"], input={"title": "before", "content": "x"}
            )

            cluster.stop()
            outage = Tally()
            for _ in range(20):
                await outage.send(client, "{ posts { totalCount } }")
            ready_down = await client.get("/ready")

            cluster.start()
            recovered_after = None
            started = time.monotonic()
            while time.monotonic() - started < 20:
                if await Tally().send(
                    client, CREATE_POST, token["accessToken"], input={"title": "after", "content": "x"}
                ):
                    recovered_after = time.monotonic() - started
                    break
                await asyncio.sleep(0.2)
            ready_up = await client.get("/ready")
    finally:
        server.stop()

    RELIABILITY_REPORT.append(
        f"database outage: {len(outage.latencies)} requests while PostgreSQL was down, errors {dict(outage.errors)}, "
        f"slowest {max(outage.latencies) * 1000:.0f} ms, /ready {ready_down.status_code} then {ready_up.status_code}, "
        f"writes again {recovered_after:.1f}s after PostgreSQL came back, without restarting the server"
        if recovered_after is not None
        else "database outage: did not recover"
    )
    assert outage.errors == Counter({"DATABASE_UNAVAILABLE": 20})
    assert max(outage.latencies) < 3  # fail fast
    assert ready_down.status_code == 503 and "database unreachable" in ready_down.json()["reason"]
    assert recovered_after is not None
    assert ready_up.status_code == 200


@pytest.mark.one_path
async def test_a_crash_leaves_no_mutation_half_done(
    database_url: str, tmp_path: Path, engine_name: str
) -> None:
    """kill -9 during a stream of createTask-with-three-notes: after a restart every task has
    its three notes, and every acknowledged task is there."""
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    tally = Tally()

    async def stream(client: httpx.AsyncClient, token: str) -> None:
        while True:
            if task := await tally.send(
                client, CREATE_TASK, token, input={"title": "t", "notes": ["1", "2", "3"]}
            ):
                tally.task_notes[task["task"]["id"]] = 3

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        account = await tally.send(
            client, REGISTER, input={"username": "ada", "email": "ada@example.com", "password": "x" * 12}
        )
        assert account is not None
        streams = [asyncio.create_task(stream(client, account["accessToken"])) for _ in range(8)]
        await asyncio.sleep(2)
        server.stop(signal.SIGKILL)
        await asyncio.sleep(0.5)
        for running in streams:
            running.cancel()
        await asyncio.gather(*streams, return_exceptions=True)

    server.start()  # the data survives the crash, and the server starts on it
    server.stop()
    _, task_notes = await _found(database_url)
    RELIABILITY_REPORT.append(
        f"crash (kill -9), {engine_name}: {len(tally.task_notes)} tasks acknowledged before the kill, "
        f"{len(task_notes)} found after restart, notes per task {sorted(set(task_notes.values()))}"
    )
    assert set(task_notes.values()) <= {3}  # no task without its notes
    assert {_pk(task) for task in tally.task_notes} <= set(task_notes)  # nothing acknowledged was lost
    assert len(tally.task_notes) > 10


@pytest.mark.one_path
async def test_sigterm_lets_in_flight_requests_finish(database_url: str, tmp_path: Path) -> None:
    engine = create_async_engine(async_database_url(database_url))
    await generate(engine, Shape(users=100, posts_per_user=100, tasks_per_user=0, notes_per_task=0), "x")
    await engine.dispose()
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    heavy = "{ users(first: 100) { edges { node { username posts(first: 100) { edges { node { title content datePosted } } } } } } }"
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        in_flight = asyncio.create_task(client.post("/graphql", json={"query": heavy}))
        await asyncio.sleep(0.15)
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        response = await in_flight
        took = time.monotonic() - started
    code = server.stop()

    edges = response.json()["data"]["users"]["edges"]
    RELIABILITY_REPORT.append(
        f"SIGTERM during a request: answered in full {took:.2f}s later (200, {len(edges)} users), exit {code}"
    )
    assert response.status_code == 200
    assert len(edges) == 100 and all(len(edge["node"]["posts"]["edges"]) == 100 for edge in edges)
    assert code in (0, -signal.SIGTERM)
