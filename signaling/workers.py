"""SFU worker processes behind the signaling server: spawn, supervise, place rooms, relay.

``WorkerPool`` offers the SFU API of ``sfu.SfuService`` (``sfu.SfuApi``), so
the signaling session does not know whether the media plane runs in-process
or in N worker processes (one per core: Python uses one core per process).
Each worker is ``python -m sfu.worker`` on one end of a Unix socketpair,
spoken to with length-prefixed JSON (sfu/ipc.py, docs/ipc.md).

Placement: a new room goes to the least-loaded worker (CPU share, then
participants, then forwarded packets/s, from the workers' one-second reports).
A room fills its worker up to ``room_participants_per_worker``; the next
participant goes to another worker, which gets a *shard* of the room: every
source of the existing shards is piped to it once (sfu/pipe.py), and its own
sources are piped back.

Supervision: when a worker dies, each of its participants gets a ``left``
event (reason ``worker_failed``) and its socket closes, so clients rejoin
and their rooms are re-created on a live worker; the worker is restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sfu import JoinResult, SfuError, SourceConstraints, UnknownParticipant
from sfu import worker as sfu_worker
from sfu.aiortc_bridge import IceSettings
from sfu.errors import RoomFull
from sfu.ipc import IpcError, Message, encode, raise_error, read_message
from sfu.participant import MAX_PENDING_EVENTS
from signaling.logs import JsonFormatter, configure_logging

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # s for a worker to import aiortc and say hello
REQUEST_TIMEOUT = 20.0  # s for a worker to answer one request
STOP_TIMEOUT = 5.0  # s between closing a worker's socket and killing it
RESTART_DELAYS = (0.2, 1.0, 2.0, 5.0)  # s before restarting a worker that keeps failing
STABLE_AFTER = 30.0  # s of life after which a worker's failures count from zero again


class WorkerUnavailable(SfuError):
    """No worker could take the request (all starting or restarting); try again."""

    code = "internal"


@dataclass(frozen=True)
class PoolSettings:
    workers: int
    ice: IceSettings = field(default_factory=IceSettings)
    max_participants_per_room: int = 100
    room_participants_per_worker: int = 30
    log_level: str = "INFO"


@dataclass
class WorkerLoad:
    """What a worker last reported: forwarded packets per second and CPU (1.0 = one core)."""

    forwarded_pps: float = 0.0
    cpu: float = 0.0
    loop_lag: float = 0.0  # s: how late the worker's one-second report woke up


class WorkerLink:
    """One worker process and its IPC socket."""

    def __init__(self, index: int, process: asyncio.subprocess.Process,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.process = process
        self.reader = reader
        self.writer = writer
        self.ready = asyncio.Event()
        self.alive = True
        self.load = WorkerLoad()
        self.stats: dict[str, Any] = {}
        self.started_at = time.monotonic()
        self._ids = itertools.count(1)
        self.pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}

    def send(self, method: str, params: dict[str, Any],
             waiter: asyncio.Future[Any] | None = None) -> None:
        if not self.alive:
            raise WorkerUnavailable(f"SFU worker {self.index} is restarting; try again")
        request_id = next(self._ids) if waiter is not None else None
        if waiter is not None and request_id is not None:
            self.pending[request_id] = (method, waiter)
        self.writer.write(encode({"id": request_id, "method": method, "params": params}))

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(method, params, waiter)
        return await asyncio.wait_for(waiter, REQUEST_TIMEOUT)

    def fail_pending(self) -> None:
        self.alive = False
        for _, waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(WorkerUnavailable(
                    f"SFU worker {self.index} stopped during the request; try again"))
        self.pending.clear()


@dataclass
class RoomPlacement:
    """Where one room's participants are served: a shard per worker, in creation order."""

    room_id: str
    shards: dict[int, set[str]] = field(default_factory=dict)  # worker -> participant ids
    names: dict[str, str] = field(default_factory=dict)  # participant id -> name
    # Held while shards change (placement, pipes, announcements), never across a join.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    joining: dict[int, int] = field(default_factory=dict)  # worker -> joins in flight
    waiting: int = 0  # join calls that may still use this placement

    @property
    def size(self) -> int:
        return sum(len(members) for members in self.shards.values()) + sum(
            self.joining.values())

    def load(self, index: int) -> int:
        """Participants of this room on one worker, joins in flight included."""
        return len(self.shards.get(index, ())) + self.joining.get(index, 0)


class WorkerPool:
    """N supervised SFU worker processes with the API of one ``SfuService``."""

    def __init__(self, settings: PoolSettings) -> None:
        if settings.workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.settings = settings
        self.links: dict[int, WorkerLink] = {}
        self.restarts: dict[int, int] = dict.fromkeys(range(settings.workers), 0)
        self._rooms: dict[str, RoomPlacement] = {}
        self._where: dict[str, tuple[str, int]] = {}  # participant -> (room, worker)
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._all_started = asyncio.Event()
        self._closing = False
        self.draining: set[int] = set()  # workers that take no new participants
        self.stalled_clients = 0  # let go for not reading their events
        self._background: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- processes

    async def start(self) -> None:
        self._supervisors = [asyncio.ensure_future(self._supervise(i))
                             for i in range(self.settings.workers)]

    async def _spawn(self, index: int) -> WorkerLink:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = {"ice_bind": self.settings.ice.bind_address,
                  "ice_announce": self.settings.ice.announced_address,
                  "max_participants": self.settings.max_participants_per_room}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signaling.workers", "--log-format", _log_format(),
                "--log-level", self.settings.log_level, "--fd", str(child.fileno()),
                "--index", str(index), "--settings", json.dumps(config),
                pass_fds=(child.fileno(),))
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return WorkerLink(index, process, reader, writer)

    async def _supervise(self, index: int) -> None:
        failures = 0
        while not self._closing:
            try:
                link = await self._spawn(index)
            except OSError:
                logger.exception("could not start SFU worker %d", index)
                await asyncio.sleep(RESTART_DELAYS[-1])
                continue
            self.links[index] = link
            logger.info("SFU worker %d started (pid %d)", index, link.process.pid)
            await self._read(link)
            link.fail_pending()
            with contextlib.suppress(Exception):
                link.writer.close()
            try:
                await asyncio.wait_for(link.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                link.process.kill()
                await link.process.wait()
            if self._closing:
                return
            logger.error("SFU worker %d (pid %d) exited with %s; its participants are told "
                         "to rejoin and the worker restarts", index, link.process.pid,
                         link.process.returncode)
            self.restarts[index] += 1
            await self._worker_failed(index)
            failures = 0 if time.monotonic() - link.started_at > STABLE_AFTER else failures + 1
            await asyncio.sleep(RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)])

    async def _read(self, link: WorkerLink) -> None:
        """Replies, events and load reports of one worker, until its socket closes."""
        while True:
            try:
                message = await read_message(link.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except IpcError as exc:
                logger.error("SFU worker %d broke the IPC framing: %s", link.index, exc)
                link.process.kill()
                return
            try:
                self._on_message(link, message)
            except Exception:
                logger.exception("bad message from SFU worker %d", link.index)

    def _on_message(self, link: WorkerLink, message: Message) -> None:
        if "event" in message:
            participant_id = str(message.get("participant_id"))
            queue = self._queues.get(participant_id)
            if queue is None:
                return
            if queue.qsize() >= MAX_PENDING_EVENTS:
                # As in-process (Participant.emit): a client that stopped reading its events
                # leaves the room rather than growing this queue without limit.
                self._queues.pop(participant_id, None)
                self.stalled_clients += 1
                task = asyncio.ensure_future(self.leave(participant_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
            queue.put_nowait(message["event"])
        elif "load" in message:
            load = message["load"]
            link.load = WorkerLoad(float(load.get("forwarded_pps", 0.0)),
                                   float(load.get("cpu", 0.0)), float(load.get("loop_lag", 0.0)))
            link.stats = message.get("stats") or {}
        elif "hello" in message:
            link.ready.set()
            if len(self.links) == self.settings.workers and all(
                    other.ready.is_set() for other in self.links.values()):
                self._all_started.set()
        elif message.get("id") is not None:
            method, waiter = link.pending.pop(int(message["id"]), ("", None))
            if waiter is None or waiter.done():
                return
            if "error" in message:
                try:
                    raise_error(message["error"])
                except SfuError as exc:
                    waiter.set_exception(exc)
                return
            result = message.get("result")
            if method == "join" and isinstance(result, dict):
                # Before the join coroutine resumes: the participant's first events follow.
                self._queues[str(result["participant_id"])] = asyncio.Queue()
            waiter.set_result(result)

    async def _worker_failed(self, index: int) -> None:
        """Tell the dead worker's participants to rejoin; the other shards forget them."""
        for room_id, placement in list(self._rooms.items()):
            if index not in placement.shards:
                continue
            async with placement.lock:
                lost = placement.shards.pop(index, set())
                for participant_id in lost:
                    self._where.pop(participant_id, None)
                    placement.names.pop(participant_id, None)
                    queue = self._queues.pop(participant_id, None)
                    if queue is not None:
                        queue.put_nowait({"type": "left", "reason": "worker_failed"})
                for other in list(placement.shards):
                    for participant_id in lost:
                        await self._quietly(other, "remote_leave", room=room_id,
                                            participant_id=participant_id)
                    await self._quietly(other, "pipe_close", room=room_id, peer=index)
            self._forget_if_empty(placement)

    async def _quietly(self, index: int, method: str, **params: Any) -> Any:
        """A bookkeeping request whose failure (worker gone meanwhile) changes nothing."""
        link = self.links.get(index)
        if link is None or not link.alive:
            return None
        try:
            return await link.request(method, params)
        except (SfuError, TimeoutError):
            logger.warning("SFU worker %d: %s for room %s failed", index, method,
                           params.get("room"))
            return None

    # ----------------------------------------------------------------- placement

    def _score(self, link: WorkerLink) -> tuple[float, int, float]:
        participants = sum(p.load(link.index) for p in self._rooms.values())
        return (round(link.load.cpu, 1), participants, link.load.forwarded_pps)

    def _choose(self, placement: RoomPlacement) -> int:
        ready = [link for link in self.links.values() if link.alive and link.ready.is_set()]
        if not ready:
            raise WorkerUnavailable("no SFU worker is running; try again")
        # A draining worker takes nobody new, unless every worker drains.
        ready = [link for link in ready if link.index not in self.draining] or ready
        cap = self.settings.room_participants_per_worker
        live = {link.index for link in ready}
        shards = [i for i in placement.shards if i in live]
        for index in shards:
            if cap <= 0 or placement.load(index) < cap:
                return index
        fresh = [link for link in ready if link.index not in placement.shards]
        if fresh:
            return min(fresh, key=self._score).index
        return min(shards, key=placement.load)

    async def _add_shard(self, placement: RoomPlacement, index: int) -> None:
        """A new worker for this room: pipes to every existing shard, their members and
        sources relayed to it."""
        room_id = placement.room_id
        new = self.links[index]
        for other in list(placement.shards):
            peer = self.links[other]
            if not peer.alive:
                continue  # its worker just died: _worker_failed removes that shard
            port_new = await new.request("pipe_open", {"room": room_id, "peer": other})
            port_old = await peer.request("pipe_open", {"room": room_id, "peer": index})
            await new.request("pipe_connect", {"room": room_id, "peer": other, "port": port_old})
            await peer.request("pipe_connect", {"room": room_id, "peer": index, "port": port_new})
            for participant_id in placement.shards[other]:
                await new.request("remote_join", {"room": room_id, "participant": {
                    "id": participant_id, "name": placement.names.get(participant_id, "")}})
            for source in await peer.request("pipe_send_all", {"room": room_id, "peer": index}):
                await new.request("pipe_receive", {"room": room_id, "peer": other,
                                                   "source": source})
        placement.shards[index] = set()

    # ----------------------------------------------------------------- the SFU API

    async def join(self, room_id: str, name: str) -> JoinResult:
        if not self._all_started.is_set():
            # Just after start: wait for every worker, so that placement can use them all.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_started.wait(), START_TIMEOUT)
        placement = self._rooms.setdefault(room_id, RoomPlacement(room_id))
        placement.waiting += 1  # the placement stays while this join may use it
        try:
            index = await self._reserve(placement)
            try:
                reply = await self.links[index].request("join", {"room": room_id, "name": name})
            except BaseException:
                async with placement.lock:
                    placement.joining[index] -= 1
                    if index in placement.shards and not placement.load(index):
                        await self._drop_shard(placement, index)
                raise
            participant_id = str(reply["participant_id"])
            async with placement.lock:
                placement.joining[index] -= 1  # and counted in its shard, in one step
                if index not in placement.shards:  # its worker died during the join
                    self._queues.pop(participant_id, None)
                    raise WorkerUnavailable("the SFU worker stopped during the join; try again")
                placement.shards[index].add(participant_id)
                placement.names[participant_id] = name
                self._where[participant_id] = (room_id, index)
                for other in list(placement.shards):
                    if other != index:
                        await self._quietly(other, "remote_join", room=room_id,
                                            participant={"id": participant_id, "name": name})
        finally:
            placement.waiting -= 1
            self._forget_if_empty(placement)
        queue = self._queues.setdefault(participant_id, asyncio.Queue())
        return JoinResult(participant_id, room_id, list(reply["participants"]),
                          list(reply["sources"]), queue)

    async def _reserve(self, placement: RoomPlacement) -> int:
        """Choose the worker for one more participant (a new shard if need be) and count
        the join as in flight there; the join itself runs outside the room's lock."""
        async with placement.lock:
            if placement.size >= self.settings.max_participants_per_room:
                raise RoomFull(f"room {placement.room_id} already has "
                               f"{self.settings.max_participants_per_room} participants")
            index = self._choose(placement)
            if index not in placement.shards:
                try:
                    await self._add_shard(placement, index)
                except BaseException:
                    await self._drop_shard(placement, index)  # pipes opened so far
                    raise
            placement.joining[index] = placement.joining.get(index, 0) + 1
            return index

    def _forget_if_empty(self, placement: RoomPlacement) -> None:
        if (not placement.shards and not placement.waiting
                and self._rooms.get(placement.room_id) is placement):
            del self._rooms[placement.room_id]

    def _link_of(self, participant_id: str) -> tuple[str, WorkerLink]:
        where = self._where.get(participant_id)
        link = self.links.get(where[1]) if where else None
        if where is None or link is None:
            raise UnknownParticipant(f"participant {participant_id} is not in a room")
        return where[0], link

    async def publish(self, participant_id: str, offer_sdp: str) -> str:
        room_id, link = self._link_of(participant_id)
        reply = await link.request("publish", {"participant_id": participant_id,
                                               "sdp": offer_sdp})
        added = [str(s) for s in reply.get("added", [])]
        placement = self._rooms.get(room_id)
        if added and placement is not None and len(placement.shards) > 1:
            async with placement.lock:
                for other in list(placement.shards):
                    if other == link.index:
                        continue
                    for source_id in added:
                        description = await self._quietly(
                            link.index, "pipe_send", room=room_id, peer=other,
                            source_id=source_id)
                        if description is not None:
                            await self._quietly(other, "pipe_receive", room=room_id,
                                                peer=link.index, source=description)
        return str(reply["answer"])

    async def answer_subscription(self, participant_id: str, revision: int,
                                  answer_sdp: str) -> None:
        _, link = self._link_of(participant_id)
        await link.request("answer_subscription", {"participant_id": participant_id,
                                                   "revision": revision, "sdp": answer_sdp})

    def set_constraints(self, participant_id: str, sources: dict[str, SourceConstraints],
                        order: list[str]) -> None:
        _, link = self._link_of(participant_id)
        link.send("set_constraints", {
            "participant_id": participant_id, "order": order,
            "sources": {k: asdict(v) for k, v in sources.items()}})

    async def leave(self, participant_id: str) -> None:
        where = self._where.pop(participant_id, None)
        self._queues.pop(participant_id, None)
        if where is None:
            return
        room_id, index = where
        await self._quietly(index, "leave", participant_id=participant_id)
        placement = self._rooms.get(room_id)
        if placement is None:
            return
        async with placement.lock:
            placement.shards.get(index, set()).discard(participant_id)
            placement.names.pop(participant_id, None)
            for other in list(placement.shards):
                if other != index:
                    await self._quietly(other, "remote_leave", room=room_id,
                                        participant_id=participant_id)
            if index in placement.shards and not placement.load(index):
                await self._drop_shard(placement, index)
        self._forget_if_empty(placement)

    async def _drop_shard(self, placement: RoomPlacement, index: int) -> None:
        placement.shards.pop(index, None)
        for other in list(placement.shards):
            await self._quietly(other, "pipe_close", room=placement.room_id, peer=index)
            await self._quietly(index, "pipe_close", room=placement.room_id, peer=other)

    # ----------------------------------------------------------------- operations

    def drain(self, index: int, *, migrate: bool = False) -> int:
        """Place nobody new on a worker; with ``migrate`` its participants are told to rejoin
        (``left``, reason ``worker_drained``) and land on the other workers. Returns how
        many were told."""
        if index not in self.links:
            raise ValueError(f"no SFU worker {index}")
        self.draining.add(index)
        if not migrate:
            return 0
        told = 0
        for participant_id, (_, where) in list(self._where.items()):
            queue = self._queues.get(participant_id)
            if where == index and queue is not None:
                queue.put_nowait({"type": "left", "reason": "worker_drained"})
                told += 1
        logger.info("SFU worker %d drains; %d participants move to the other workers",
                    index, told)
        return told

    def undrain(self, index: int) -> None:
        self.draining.discard(index)

    def room_size(self, room_id: str) -> int:
        placement = self._rooms.get(room_id)
        return placement.size if placement is not None else 0

    def unavailable(self) -> str | None:
        """Not ready while no worker serves (starting, or all restarting)."""
        if any(link.alive and link.ready.is_set() for link in self.links.values()):
            return None
        return "no SFU worker process is running yet"

    def placement(self, participant_id: str) -> int | None:
        """The worker serving a participant (tests and logs)."""
        where = self._where.get(participant_id)
        return where[1] if where else None

    # ----------------------------------------------------------------- statistics

    def stats(self) -> dict[str, Any]:
        """The workers' last reports (at most a second old, without per-source detail: the
        workers send a summary), summed like one SFU's; ``current_stats`` has everything."""
        return self._aggregate({i: link.stats for i, link in self.links.items()})

    async def current_stats(self) -> dict[str, Any]:
        """Fresh statistics from every live worker."""
        async def fetch(link: WorkerLink) -> dict[str, Any]:
            if not link.alive or not link.ready.is_set():
                return link.stats
            try:
                stats: dict[str, Any] = await link.request("stats", {})
            except (SfuError, TimeoutError):
                return link.stats
            link.stats = stats
            return stats

        links = list(self.links.values())
        fresh = await asyncio.gather(*(fetch(link) for link in links))
        return self._aggregate({link.index: s for link, s in zip(links, fresh, strict=True)})

    def _aggregate(self, per_worker: dict[int, dict[str, Any]]) -> dict[str, Any]:
        counters: dict[str, int] = {}
        sources: dict[str, dict[str, Any]] = {}
        subscribers: dict[str, Any] = {}
        workers = []
        participants = decoder_threads = producers = 0
        for stats in per_worker.values():
            for key, value in (stats.get("counters") or {}).items():
                counters[key] = counters.get(key, 0) + int(value)
        # Stalled in the pool's queue rather than in a worker's (workers push at once).
        counters["stalled_clients"] = counters.get("stalled_clients", 0) + self.stalled_clients
        for index in range(self.settings.workers):
            stats = per_worker.get(index) or {}
            link = self.links.get(index)
            for source_id, source in (stats.get("sources") or {}).items():
                known = sources.get(source_id)
                if known is None:
                    sources[source_id] = dict(source)
                    continue
                # The same source on its publisher's worker and piped to others: the
                # publisher's side describes it (layers, upstream), consumers add up.
                consumers = int(known["consumers"]) + int(source["consumers"])
                if known.get("piped") and not source.get("piped"):
                    sources[source_id] = dict(source)
                sources[source_id]["consumers"] = consumers
            subscribers.update(stats.get("subscribers") or {})
            participants += int(stats.get("participants", 0))
            info = stats.get("worker") or {}
            decoder_threads += int(info.get("decoder_threads", 0))
            producers += int(info.get("local_producers", 0))
            workers.append({
                "index": index, "pid": link.process.pid if link else None,
                "alive": bool(link and link.alive and link.ready.is_set()),
                "draining": index in self.draining,
                "restarts": self.restarts.get(index, 0),
                "load": asdict(link.load) if link else asdict(WorkerLoad()),
                "rooms": int(stats.get("rooms", 0)), "participants": int(stats.get(
                    "participants", 0)),
                "pipes": int(info.get("pipes", 0)), "counters": stats.get("counters") or {},
            })
        return {"rooms": len(self._rooms), "participants": participants,
                "producers": producers, "sources": sources, "subscribers": subscribers,
                "counters": counters, "decoder_threads": decoder_threads, "workers": workers}

    async def close(self) -> None:
        self._closing = True
        for participant_id in list(self._where):
            await self.leave(participant_id)
        for link in self.links.values():
            link.alive = False
            with contextlib.suppress(Exception):
                link.writer.close()
        await asyncio.gather(*self._supervisors, return_exceptions=True)


def _log_format() -> str:
    """The node's log format (``--log-format``), for its workers' lines to match."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in handlers) else "text"


def main(argv: list[str] | None = None) -> int:
    """A worker process (``python -m signaling.workers``): the node's log format and level
    (aioice quietened, tokens redacted), then ``sfu.worker``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="INFO")
    known, rest = parser.parse_known_args(argv)
    configure_logging(known.log_level, known.log_format)
    return sfu_worker.main([*rest, "--log-level", known.log_level])


if __name__ == "__main__":
    sys.exit(main())
