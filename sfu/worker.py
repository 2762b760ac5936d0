"""One SFU worker process: an ``SfuService`` on its own uvloop, driven over IPC.

``visio serve --workers N`` starts N of these (``python -m sfu.worker``), each
with one end of a Unix socketpair. The worker answers the signaling server's
requests (docs/ipc.md), pushes each participant's events, reports its load
and statistics every second, and relays sources of rooms that span workers
(sfu/pipe.py). It exits when the socket closes: a worker never outlives the
signaling process that supervises it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from sfu.aiortc_bridge import IceSettings
from sfu.allocator import SourceConstraints
from sfu.errors import SfuError, UnknownParticipant
from sfu.ipc import IpcError, Message, encode, error_reply, read_message
from sfu.participant import Event
from sfu.pipe import PipeTransport, RemoteMember
from sfu.service import SfuService, SfuSettings

logger = logging.getLogger(__name__)

REPORT_INTERVAL = 1.0  # seconds between two load + statistics pushes

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class WorkerServer:
    """Serves one IPC link: requests in, replies, events and load reports out."""

    def __init__(self, index: int, service: SfuService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.service = service
        self._reader = reader
        self._writer = writer
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._pipes: dict[tuple[str, int], PipeTransport] = {}  # (room, peer worker)
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Handler] = {
            "join": self._join, "publish": self._publish,
            "answer_subscription": self._answer_subscription,
            "set_constraints": self._set_constraints, "leave": self._leave,
            "stats": self._stats, "remote_join": self._remote_join,
            "remote_leave": self._remote_leave, "pipe_open": self._pipe_open,
            "pipe_connect": self._pipe_connect, "pipe_send": self._pipe_send,
            "pipe_send_all": self._pipe_send_all, "pipe_receive": self._pipe_receive,
            "pipe_close": self._pipe_close,
        }

    def push(self, message: Message) -> None:
        if not self._writer.is_closing():
            self._writer.write(encode(message))

    async def run(self) -> None:
        """Serve until the signaling process closes the link (or dies)."""
        self.push({"hello": {"worker": self.index, "pid": os.getpid()}})
        reporter = asyncio.ensure_future(self._report())
        try:
            while True:
                try:
                    message = await read_message(self._reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                task = asyncio.ensure_future(self._serve(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            reporter.cancel()
            for pipe in list(self._pipes.values()):
                await pipe.close()
            await self.service.close()

    async def _serve(self, message: Message) -> None:
        request_id = message.get("id")
        handler = self._handlers.get(str(message.get("method")))
        params = message.get("params")
        try:
            if handler is None or not isinstance(params, dict):
                raise SfuError(f"unknown request {message.get('method')!r}")
            result = await handler(params)
        except Exception as exc:
            if not isinstance(exc, SfuError):
                logger.exception("worker %d: %s failed", self.index, message.get("method"))
            self.push(error_reply(request_id, exc))
            return
        self.push({"id": request_id, "result": result})

    # ----------------------------------------------------------------- the SFU API

    async def _join(self, params: dict[str, Any]) -> dict[str, Any]:
        result = await self.service.join(str(params["room"]), str(params["name"]))
        self._pumps[result.participant_id] = asyncio.ensure_future(
            self._pump(result.participant_id, result.events))
        return {"participant_id": result.participant_id, "room_id": result.room_id,
                "participants": result.participants, "sources": result.sources}

    async def _pump(self, participant_id: str, events: asyncio.Queue[Event]) -> None:
        while True:
            event = await events.get()
            self.push({"event": event, "participant_id": participant_id})

    async def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        participant_id = str(params["participant_id"])
        room, member = self.service._participant(participant_id)
        before = set(member.producers.values())
        answer = await self.service.publish(participant_id, str(params["sdp"]))
        added = [p.id for p in member.producers.values() if p not in before]
        return {"answer": answer, "room": room.id, "added": added}

    async def _answer_subscription(self, params: dict[str, Any]) -> None:
        await self.service.answer_subscription(str(params["participant_id"]),
                                               int(params["revision"]), str(params["sdp"]))

    async def _set_constraints(self, params: dict[str, Any]) -> None:
        sources = {str(k): SourceConstraints(**v) for k, v in dict(params["sources"]).items()}
        self.service.set_constraints(str(params["participant_id"]), sources,
                                     [str(s) for s in params["order"]])

    async def _leave(self, params: dict[str, Any]) -> None:
        participant_id = str(params["participant_id"])
        pump = self._pumps.pop(participant_id, None)
        await self.service.leave(participant_id)
        if pump is not None:
            pump.cancel()
        await self._close_pipes_of_empty_rooms()

    async def _stats(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.stats()

    def stats(self) -> dict[str, Any]:
        stats = self.service.stats()
        stats["worker"] = self._about()
        return stats

    def summary(self) -> dict[str, Any]:
        """What the one-second report carries: counts, counters and each subscriber's
        estimate, without per-source detail (``stats`` requests get that). Read-only: it
        does not run the allocators' budget code as ``stats`` does."""
        rooms = self.service.rooms.values()
        members = [m for room in rooms for m in room.participants.values()]
        return {"rooms": len(rooms), "participants": len(members),
                "counters": self.service.counters.as_dict(), "worker": self._about(),
                "subscribers": {m.id: {"estimate_bps": m.bandwidth.estimate_bps}
                                for m in members}}

    def _about(self) -> dict[str, Any]:
        rooms = self.service.rooms.values()
        return {
            "index": self.index, "pid": os.getpid(), "threads": threading.active_count(),
            "decoder_threads": sum(1 for t in threading.enumerate()
                                   if t.name.endswith("-decoder")),
            "pipes": len(self._pipes),
            "local_producers": sum(len(m.producers) for room in rooms
                                   for m in room.participants.values()),
            "pipe_packets_received": sum(p.packets_received for p in self._pipes.values()),
        }

    # ----------------------------------------------------------------- rooms across workers

    async def _remote_join(self, params: dict[str, Any]) -> None:
        room = self.service.room_for(str(params["room"]))
        participant = dict(params["participant"])
        if str(participant["id"]) not in room.remote:
            room.add_remote(RemoteMember(str(participant["id"]), str(participant["name"])))

    async def _remote_leave(self, params: dict[str, Any]) -> None:
        room = self.service.rooms.get(str(params["room"]))
        if room is not None:
            await room.remove_remote(str(params["participant_id"]))

    def _pipe(self, params: dict[str, Any]) -> PipeTransport:
        pipe = self._pipes.get((str(params["room"]), int(params["peer"])))
        if pipe is None:
            raise UnknownParticipant(f"no pipe for room {params['room']} to worker "
                                     f"{params['peer']}")
        return pipe

    async def _pipe_open(self, params: dict[str, Any]) -> int:
        key = (str(params["room"]), int(params["peer"]))
        old = self._pipes.pop(key, None)
        if old is not None:
            await old.close()
        pipe = self._pipes[key] = PipeTransport(self.service.room_for(key[0]),
                                                self.service.counters)
        return await pipe.open()

    async def _pipe_connect(self, params: dict[str, Any]) -> None:
        self._pipe(params).connect(int(params["port"]))

    async def _pipe_send(self, params: dict[str, Any]) -> dict[str, Any] | None:
        pipe = self._pipe(params)
        source_id = str(params["source_id"])
        producer = next((p for p in pipe.room.producers() if p.id == source_id
                         and p.participant_id in pipe.room.participants), None)
        return pipe.send_source(producer) if producer is not None else None

    async def _pipe_send_all(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Relay every source published here to the peer (a new shard of the room)."""
        pipe = self._pipe(params)
        local = [p for m in pipe.room.participants.values() for p in m.producers.values()]
        return [d for d in (pipe.send_source(p) for p in local) if d is not None]

    async def _pipe_receive(self, params: dict[str, Any]) -> None:
        await self._pipe(params).receive_source(dict(params["source"]))

    async def _pipe_close(self, params: dict[str, Any]) -> None:
        pipe = self._pipes.pop((str(params["room"]), int(params["peer"])), None)
        if pipe is not None:
            await pipe.close()

    async def _close_pipes_of_empty_rooms(self) -> None:
        for key, pipe in list(self._pipes.items()):
            if key[0] not in self.service.rooms:
                del self._pipes[key]
                await pipe.close()

    # ----------------------------------------------------------------- load

    async def _report(self) -> None:
        """Every second: forwarded packets/s and CPU share (placement), and the statistics."""
        counters = self.service.counters
        last_at, last_cpu, last_out = time.monotonic(), time.process_time(), 0
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            now, cpu, out = time.monotonic(), time.process_time(), counters.rtp_packets_out
            elapsed = max(now - last_at, 1e-3)
            load = {"worker": self.index, "forwarded_pps": (out - last_out) / elapsed,
                    "cpu": (cpu - last_cpu) / elapsed,
                    # how late this one-second sleep woke up: a saturated loop is late
                    "loop_lag": max(0.0, elapsed - REPORT_INTERVAL)}
            last_at, last_cpu, last_out = now, cpu, out
            try:
                self.push({"load": load, "stats": self.summary()})
            except Exception:
                logger.exception("worker %d: load report failed", self.index)


class WorkerTag(logging.Filter):
    """Prefixes each record's logger name with the worker, so the node's log says which."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.prefix = f"worker{index}."

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            record.name = self.prefix + record.name
        return True


async def serve(fd: int, index: int, settings: SfuSettings) -> None:
    SfuService.check_environment()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    server = WorkerServer(index, SfuService(settings), reader, writer)
    try:
        await server.run()
    except IpcError as exc:
        logger.error("worker %d: broken IPC link: %s", index, exc)
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfu.worker",
                                     description="one visio SFU worker (started by visio serve)")
    parser.add_argument("--fd", type=int, required=True, help="inherited IPC socket")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--settings", required=True, help="JSON: ice_bind, ice_announce, "
                                                          "max_participants")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # Started by ``python -m signaling.workers``, the node's log handler is in place already.
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerTag(args.index))
    raw = json.loads(args.settings)
    settings = SfuSettings(ice=IceSettings(str(raw["ice_bind"]), str(raw["ice_announce"])),
                           max_participants_per_room=int(raw["max_participants"]))
    uvloop.run(serve(args.fd, args.index, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
