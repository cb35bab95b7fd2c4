"""Subscriptions answered together: one compiled read per event for every subscriber of a document.

The subscribers of the same admitted document (text, operation, variables) and the same kind of
viewer (anonymous, user, superuser) form a group. The group follows its topic once; for each
event it wants, one statement reads the changed row as the document selects it, for all the
group's viewers at once (their ids bound as a list, schema/compiled/sql.py's `for_viewers`)
when the answer depends on who asks, else once for all. Each subscriber then gets its own answer,
or nothing when it may not see the row: the same answers, in the same order, as the resolvers
give one subscriber at a time (schema/realtime/streams.py, the reference).

A subscription that resumes (`after:`) joins its group at once, its live answers held back, reads
what it missed from the log on its own, then receives the held answers it had not seen.

Documents the compiled path does not express (a field beyond the change's kind, id, cursor and
row; a row selection the planner refuses) are left to the resolvers: `join` returns None.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLError, GraphQLObjectType, get_named_type

from db.events import BadPosition, Broker, Event, PositionExpired, ResumeUnavailable, SubscriberTooSlow
from db.read_connections import ReadConnections, ReadFailed, ReadUnreachable
from db.session import RequestDb
from db.visibility import Viewer
from schema.declare.nodes import NodeType
from schema.declare.specs import SubscriptionSpec, spec_of
from schema.execution.answers import Answer, WriteNow, errors_answer
from schema.execution.loaders import Loaders
from schema.mutations import login_required_for
from schema.realtime.streams import (
    encode_cursor,
    narrowing_of,
    parent_missing,
    refused,
    required_parents,
    sees_gone,
    starting_position,
    stream_error,
    stream_node_type_of,
    wanted,
)
from schema.relay import to_global_id

if TYPE_CHECKING:
    from schema.admission.admission import Admitted, Prepared
    from schema.compiled.plans import CompiledReads, Plan
    from schema.execution.context import Services

log = logging.getLogger("quill.subscriptions")

_ENVELOPE = {"kind", "id", "cursor", "__typename"}


@dataclass(frozen=True, slots=True)
class Shape:
    """What a subscription document asks, once per admitted document."""

    key: str  # the root field's response key
    spec: SubscriptionSpec
    node_type: NodeType
    change_type: str | None  # the change type's name; None: the root field is the row
    envelope: tuple[tuple[str, str], ...]  # (response key, "kind" | "id" | "cursor" | "__typename" | "row")
    rows: tuple[tuple[str, tuple[FieldNode, ...]], ...]  # each row field's response key and nodes
    arguments: dict[str, Any]


@dataclass(eq=False)
class Member:
    """One subscriber of a group: the answers waiting for its reader (at most `limit`), and the
    future its reader sleeps on. A deque and one future rather than an asyncio.Queue: a delivery
    is an append and a set_result (the queue's bookkeeping was a tenth of a delivery's CPU)."""

    viewer: Viewer
    limit: int
    waiting: deque[bytes | None] = field(default_factory=deque)  # None: complete
    wake: asyncio.Future[None] | None = None
    # Asked once: asyncio.get_running_loop() is a getpid() system call each time.
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    # The transport's writer, where it has one: an answer goes to the socket from the group's
    # fan-out, without waking the member's task (that wake was a sixth of a delivery's CPU).
    write_now: WriteNow | None = None
    held: list[tuple[tuple[int, ...], bytes]] | None = None  # live answers held while it catches up
    # The last event it caught up to: the log can be read ahead of the live stream, whose events
    # up to here it already has.
    floor: tuple[int, ...] = ()
    ended: GraphQLError | None = None  # why it was dropped

    def offer(self, body: bytes, position: tuple[int, ...]) -> None:
        """Never waits: a member that does not keep up is dropped, as the resolvers' are."""
        if self.ended is not None or position <= self.floor:
            return
        if self.held is not None:
            if len(self.held) < self.limit:
                self.held.append((position, body))
            else:
                self.end(_too_slow(self.limit))
        elif not self.waiting and self.write_now is not None and self.write_now(body):
            return  # written; anything queued would have had to go first
        elif len(self.waiting) < self.limit:
            self._put(body)
        else:
            self.end(_too_slow(self.limit))  # what was queued goes out first

    def end(self, why: GraphQLError) -> None:
        self.ended = why
        self._wake()

    def finish(self) -> None:
        """The server is shutting down: complete after what is queued (the oldest may go)."""
        if len(self.waiting) >= self.limit:
            self.waiting.popleft()
        self._put(None)

    async def answers(self) -> AsyncIterator[bytes]:
        """What is delivered to it, in order, until it completes or is ended (then GraphQLError)."""
        while True:
            if self.waiting:
                body = self.waiting.popleft()
                if body is None:
                    return
                yield body
            elif self.ended is not None:
                raise self.ended
            else:
                self.wake = self.loop.create_future()
                try:
                    await self.wake
                finally:
                    self.wake = None

    def _put(self, body: bytes | None) -> None:
        self.waiting.append(body)
        self._wake()

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


def _too_slow(size: int) -> GraphQLError:
    message = f"subscriber too slow: over {size} events waited for it; subscription ended"
    return GraphQLError(message, extensions={"code": "SUBSCRIBER_TOO_SLOW"})


_UNAVAILABLE = GraphQLError(
    "The database is unavailable; try again shortly.", extensions={"code": "DATABASE_UNAVAILABLE"}
)


@dataclass(eq=False)
class Group:
    hub: Hub
    prepared: Prepared
    shape: Shape
    kind: str
    pinned: dict[str, int]
    members: set[Member] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    # Reading.

    def plans(self, viewer: Viewer) -> list[tuple[str, Plan]] | None:
        """Each row's plan: read once for the whole list of viewers where the row depends on who
        asks (viewers_slots), else once for all. None where the compiled path cannot answer the
        group: a row the planner refuses, or one that depends on the viewer where viewer lists
        cannot be bound."""
        compiled = self.hub.compiled
        plans = []
        for key, nodes in self.shape.rows:
            plan = compiled.object_plan(self.prepared, self.shape.node_type, list(nodes), viewer)
            if plan is not None and plan.reads_the_viewer:
                plan = compiled.viewers_plan(self.prepared, self.shape.node_type, list(nodes), viewer)
            if plan is None:
                return None
            plans.append((key, plan))
        return plans

    async def rows_for(
        self, event: Event, viewers: list[Viewer], on: ReadConnections | None = None
    ) -> dict[int | None, dict[str, Any]] | None:
        """Each viewer's rows (by row key; None where it may not see the row), by viewer id, read
        on a replica's connections (`on`: a failure raises ReadFailed) or the primary's."""
        compiled, deadline = self.hub.compiled, time.monotonic() + self.hub.timeout_seconds
        found: dict[int | None, dict[str, Any]] = {viewer.id: {} for viewer in viewers}
        plans = self.plans(viewers[0])
        if plans is None:
            return None
        for key, plan in plans:
            if plan.viewers_slots:
                ids = [viewer.id for viewer in viewers if viewer.id is not None]
                answers = await compiled.read_for_viewers(plan, ids, deadline, event.id, on)
                if answers is None:
                    return None
                for viewer in viewers:
                    answer = answers.get(viewer.id)  # type: ignore[arg-type]
                    found[viewer.id][key] = None if answer is None else answer["o"]
            else:
                body = await compiled.read(self.prepared, plan, viewers[0], deadline, event.id, on)
                if body is None:
                    return None
                row = orjson.loads(body)["data"]["o"]
                for viewer in viewers:
                    found[viewer.id][key] = row
        return found

    def body(self, event: Event, rows: dict[str, Any] | None) -> bytes:
        shape = self.shape
        if shape.change_type is None:
            assert rows is not None
            value: Any = rows[shape.rows[0][0]]
        else:
            value = {}
            for key, source in shape.envelope:
                if source == "kind":
                    value[key] = event.kind.upper()
                elif source == "id":
                    value[key] = to_global_id(shape.node_type.name, event.id)
                elif source == "cursor":
                    assert event.position is not None
                    value[key] = encode_cursor(event.position)
                elif source == "__typename":
                    value[key] = shape.change_type
                else:
                    value[key] = None if rows is None else rows[key]
        return orjson.dumps({"data": {shape.key: value}})

    async def answers(self, event: Event, members: list[Member]) -> list[tuple[Member, bytes]] | None:
        """What each member receives for the event (nothing, for those who may not see it)."""
        shape = self.shape
        if not wanted(shape.spec, event, self.pinned):
            return []
        if event.kind == "deleted":
            if shape.change_type is None:
                return []
            gone = [m for m in members if sees_gone(shape.node_type, m.viewer, event)]
            if not gone:
                return []
            body = self.body(event, None)
            return [(member, body) for member in gone]
        found = await self._read(event, list({m.viewer.id: m.viewer for m in members}.values()))
        if found is None:
            return None
        # One body per distinct answer, looked up by viewer (many members share one: anonymous).
        bodies: dict[bytes, bytes] = {}
        by_viewer: dict[int | None, bytes | None] = {}
        for viewer_id, rows in found.items():
            if any(row is None for row in rows.values()):
                by_viewer[viewer_id] = None  # a row this viewer may not see
                continue
            identity = orjson.dumps(rows)
            if identity not in bodies:
                bodies[identity] = self.body(event, rows)
            by_viewer[viewer_id] = bodies[identity]
        return [(member, given) for member in members if (given := by_viewer[member.viewer.id]) is not None]

    async def _read(self, event: Event, viewers: list[Viewer]) -> dict[int | None, dict[str, Any]] | None:
        """`rows_for` on a replica that has replayed the event's write, else on the primary."""
        replicas = self.hub.services.replicas
        replica = None if replicas is None else await replicas.for_event()
        if replicas is not None and replica is not None and replica.reads is not None:
            try:
                return await self.rows_for(event, viewers, replica.reads)
            except ReadFailed as error:  # the primary answers: a replica down, or a recovery conflict
                if isinstance(error, ReadUnreachable):
                    replicas.failed(replica, error)
        return await self.rows_for(event, viewers)

    async def follow(self, broker: Broker) -> None:
        """Answer the members event by event; when the broker ends the stream (shutting down)
        they complete, and if the group itself fell behind they are dropped as too slow."""
        try:
            await self._follow(broker)
        except SubscriberTooSlow:
            for member in self.members:
                member.end(_too_slow(broker.queue_size))
            return
        except Exception:  # a bug must end the subscriptions, not leave them waiting forever
            log.exception("a subscription group failed; ending its subscribers")
            for member in self.members:
                member.end(_UNAVAILABLE)
            return
        for member in self.members:
            member.finish()

    async def _follow(self, broker: Broker) -> None:
        async with broker.subscribe(self.shape.node_type.name.lower()) as subscription:
            async for event in subscription:
                members = [member for member in self.members if member.ended is None]
                if not members:
                    continue
                assert event.position is not None
                position = broker.order_key(event.position)
                given = await self.answers(event, members)
                if given is None:
                    log.warning("a compiled subscription read failed; ending its subscribers")
                    for member in members:
                        member.end(_UNAVAILABLE)
                    continue
                for member, body in given:
                    member.offer(body, position)


class Hub:
    def __init__(self, compiled: CompiledReads, services: Services, timeout_seconds: float) -> None:
        self.compiled = compiled
        self.services = services
        self.timeout_seconds = timeout_seconds
        self.groups: dict[tuple[int, str], Group] = {}

    @property
    def broker(self) -> Broker:
        return self.services.broker

    def shape(self, prepared: Prepared) -> Shape | None:
        if ("stream",) not in prepared.plans:
            try:
                prepared.plans[("stream",)] = self._shape(prepared)
            except GraphQLError:
                prepared.plans[("stream",)] = None  # an argument the resolvers refuse, with their error
        shape: Shape | None = prepared.plans[("stream",)]
        return shape

    def _shape(self, prepared: Prepared) -> Shape | None:
        planner = self.compiled.planner(prepared, Viewer())
        root = planner.schema.subscription_type
        assert root is not None
        assert prepared.operation.selection_set is not None
        collected = planner.collect(root, [prepared.operation.selection_set])
        if len(collected) != 1:
            return None
        [(key, nodes)] = collected.items()
        definition = root.fields.get(nodes[0].name.value)
        if definition is None:
            return None
        spec = spec_of(definition.extensions.get("strawberry-definition"))
        if not isinstance(spec, SubscriptionSpec):
            return None
        node_type = stream_node_type_of(definition.type, spec)
        arguments = planner.arguments(root, nodes[0])
        if spec.row is None:
            return Shape(key, spec, node_type, None, (), ((key, tuple(nodes)),), arguments)
        change = get_named_type(definition.type)
        assert isinstance(change, GraphQLObjectType)
        envelope, rows = [], []
        for field_key, field_nodes in planner.sub_fields(change, nodes).items():
            name = field_nodes[0].name.value
            if name == _camel(spec.row):
                envelope.append((field_key, "row"))
                rows.append((field_key, tuple(field_nodes)))
            elif name in _ENVELOPE:
                envelope.append((field_key, name))
            else:
                return None
        return Shape(key, spec, node_type, change.name, tuple(envelope), tuple(rows), arguments)

    async def join(
        self, admitted: Admitted, write_now: WriteNow | None = None
    ) -> AsyncIterator[Answer] | None:
        """The subscriber's answers, or None where the resolvers must answer it."""
        prepared, viewer = admitted.prepared, admitted.authentication.viewer
        shape = self.shape(prepared)
        if shape is None:
            return None
        group_key = (id(prepared), viewer.kind)
        group = self.groups.get(group_key)
        if group is None:
            try:
                pinned = narrowing_of(shape.spec, shape.arguments)
            except GraphQLError:
                return None
            group = Group(self, prepared, shape, viewer.kind, pinned)
            if not shape.rows or group.plans(viewer) is None:
                return None
        return self._answers(group, group_key, admitted, write_now)

    async def _answers(
        self, group: Group, group_key: tuple[int, str], admitted: Admitted, write_now: WriteNow | None
    ) -> AsyncIterator[Answer]:
        viewer, shape = admitted.authentication.viewer, group.shape
        try:
            await self._may_subscribe(admitted, group)
            after = starting_position(shape.arguments) if shape.spec.resumable else None
            if after is not None:
                self.broker.check(after)
        except (BadPosition, PositionExpired, ResumeUnavailable) as error:
            yield _ended(errors_answer([stream_error(error)]))
            return
        except GraphQLError as error:
            yield _ended(errors_answer([error]))
            return
        member = Member(viewer, self.services.settings.subscription_queue_size)
        if after is not None:
            member.held = []
        self._add(group, group_key, member)
        try:
            if after is not None:
                async for missed in self._catch_up(group, member, after):
                    yield Answer(missed)
            # Only now: what it missed, and what was held meanwhile, go first.
            member.write_now = write_now
            try:
                async for body in member.answers():
                    yield Answer(body)
            except GraphQLError as why:
                yield _ended(errors_answer([why]))
        finally:
            self._remove(group, group_key, member)

    async def _may_subscribe(self, admitted: Admitted, group: Group) -> None:
        """The resolvers' checks at the start of a subscription (schema/realtime/streams.py's follow)."""
        viewer, shape = admitted.authentication.viewer, group.shape
        if shape.spec.login and (error := login_required_for(admitted.authentication)):
            raise refused(error.message, error.reason)
        parents = required_parents(shape.spec, group.pinned)
        if not parents:
            return
        db = RequestDb(self.services.sessionmaker, write_turns=self.services.write_turns)
        try:
            loaders = Loaders(db, viewer)
            for argument, parent_type, pk in parents:
                if await loaders.visible(parent_type, pk) is None:
                    raise parent_missing(argument, parent_type)
        finally:
            await db.close()

    async def _catch_up(self, group: Group, member: Member, after: str) -> AsyncIterator[bytes]:
        """What the member missed after `after`, from the log; then the answers held meanwhile."""
        broker, last = self.broker, self.broker.order_key(after)
        topic = group.shape.node_type.name.lower()
        async for event in broker.history(after):
            assert event.position is not None
            last = broker.order_key(event.position)
            if event.topic != topic:
                continue
            given = await group.answers(event, [member])
            if given is None:
                member.end(_UNAVAILABLE)
                return
            for _, body in given:
                yield body
        member.floor = last
        held, member.held = member.held or [], None
        for position, body in held:
            if position > last:
                yield body

    def _add(self, group: Group, key: tuple[int, str], member: Member) -> None:
        if key not in self.groups:
            self.groups[key] = group
            group.task = asyncio.create_task(group.follow(self.broker), name="quill-subscription-group")
        self.groups[key].members.add(member)

    def _remove(self, group: Group, key: tuple[int, str], member: Member) -> None:
        group = self.groups.get(key, group)
        group.members.discard(member)
        if not group.members and self.groups.get(key) is group:
            del self.groups[key]
            if group.task is not None:
                group.task.cancel()

    def end_all(self) -> None:
        for group in self.groups.values():
            for member in group.members:
                member.finish()


def _ended(answer: Answer) -> Answer:
    return dataclasses.replace(answer, ends=True)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
