"""Listening light participants in a process of their own, with that process's CPU time.

The forwarding benchmark publishes from its own process (aiortc's live VP8
encoder) and must still say what the *light client* costs per received
packet. The subscribers therefore run in a child process (one uvloop loop,
like a locust worker hosting its participants): its CPU time is exactly the
light client's (``time.process_time``: user + system of all its threads,
to the nanosecond), with no share of the encoder and no contention for a
GIL with it. The parent drives it with one JSON line per command on the
child's stdin and reads one JSON line back on its stdout:

    {"command": "waiting"}  -> {"waiting": 3, "errors": []}
    {"command": "sample"}   -> {"cpu": 1.25, "packets": [..], "lost": 0, "expected": 0}
    {"command": "stop"}     -> {"stopped": true}

    python -m loadtest.subscriber_pool --url URL --room ROOM --count N [--audio] [--sinks K]

With ``--sinks K`` K subscribers turn into kernel sinks
(``loadtest.kernel_sink``) as soon as each has received video: joining
hundreds of readers first would saturate the machine (and time handshakes
out) before the measurement even starts. The R = N - K that go on reading
are the first R - R/2 to join and the last R/2 (``readers``): a room
larger than one SFU worker fills the first worker, then alternates, so
the first readers sit on the publisher's worker and the last are spread
over all of them, and a loss on any worker shows in the readers' counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop

from loadtest.participant import LightParticipant, ParticipantConfig

REPLY_TIMEOUT = 60.0  # s for a reply
JOIN_SECONDS = 0.5  # s per participant allowed at start (one after the other, each slower)
STOP_TIMEOUT = 20.0


@dataclass
class PoolSample:
    """The pool's CPU time and every subscriber's received packets, at one moment."""

    at: float
    cpu: float
    packets: list[int]
    lost: int  # sequence gaps the subscribers saw (RFC 3550, RTX excluded), all streams
    expected: int
    paused: int = 0  # times the SFU paused a video for a subscriber (source_paused events)


class SubscriberPool:
    """N listening ``LightParticipant``s in a child process (see the module docstring)."""

    def __init__(self, base_url: str, room: str, count: int, *, audio: bool,
                 transport_cc: bool, sinks: int = 0) -> None:
        self.arguments = ["--url", base_url, "--room", room, "--count", str(count)]
        self._start_timeout = max(REPLY_TIMEOUT, count * JOIN_SECONDS)
        if audio:
            self.arguments.append("--audio")
        if transport_cc:
            self.arguments.append("--transport-cc")
        if sinks:
            self.arguments += ["--sinks", str(sinks)]
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Spawn the child (it inherits this process's core) and wait until all joined."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.subscriber_pool", *self.arguments,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        reply = await self._read(self._start_timeout)
        if not reply.get("started"):
            raise RuntimeError(f"subscriber pool failed to start: {reply.get('error')}")

    async def _read(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdout is None:
            raise RuntimeError("subscriber pool not started")
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"the subscriber pool did not reply within {timeout:g} s "
                               "(joins slow down when the SFU is near saturation)") from None
        if not line:
            raise RuntimeError(f"subscriber pool exited with {await process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def _request(self, command: str, **arguments: Any) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("subscriber pool not started")
        process.stdin.write(json.dumps({"command": command, **arguments}).encode() + b"\n")
        await process.stdin.drain()
        return await self._read()

    async def waiting(self, audio: bool) -> tuple[int, list[str], list[str]]:
        """How many subscribers lack media (video, and audio if published), errors, and
        the connection states the waiting ones are in."""
        reply = await self._request("waiting")
        return int(reply["waiting"]), list(reply["errors"]), list(reply.get("states", []))

    async def hide(self, sources: list[str]) -> None:
        """Every subscriber tells the SFU these videos are off-screen (it pauses them)."""
        await self._request("hide", sources=sources)

    async def sample(self) -> PoolSample:
        at = time.monotonic()
        reply = await self._request("sample")
        return PoolSample(at, float(reply["cpu"]), list(reply["packets"]), int(reply["lost"]),
                          int(reply["expected"]), int(reply.get("paused", 0)))

    async def close(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._request("stop"), STOP_TIMEOUT)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


# --------------------------------------------------------------------------- the child


def _received_kinds(participant: LightParticipant) -> set[str]:
    """The kinds of media (audio, video) a subscriber has received packets of."""
    return {s.kind for s in participant.streams.values() if s.packets and not s.rtx}


def _waiting(participants: list[LightParticipant], audio: bool) -> dict[str, Any]:
    waiting: list[LightParticipant] = []
    for participant in participants:
        kinds = _received_kinds(participant)
        if "video" not in kinds or (audio and "audio" not in kinds):
            waiting.append(participant)
    errors = [f"{p.config.name}: {p.error}" for p in participants if p.error]
    return {"waiting": len(waiting), "errors": errors,
            "states": sorted({p.connection_state() for p in waiting})}


def _sample(participants: list[LightParticipant]) -> dict[str, Any]:
    lost = expected = 0
    for participant in participants:
        for stream in participant.streams.values():
            lost += stream.lost
            expected += stream.expected
    return {"cpu": time.process_time(), "packets": [p.packets for p in participants],
            "lost": lost, "expected": expected,
            "paused": sum(p.paused for p in participants)}


SINK_CHECK_INTERVAL = 0.1  # s


def readers(count: int, sinks: int) -> list[int]:
    """Which of ``count`` subscribers (by join order) keep reading when ``sinks`` drop."""
    reading = count - max(0, min(sinks, count - 1))  # one at least goes on measuring
    last = reading // 2
    return [*range(reading - last), *range(count - last, count)]


async def _sink_when_flowing(candidates: list[LightParticipant]) -> None:
    """Each candidate becomes a kernel sink once its video flows (see the module docstring)."""
    pending = list(candidates)
    while pending:
        await asyncio.sleep(SINK_CHECK_INTERVAL)
        still = []
        for participant in pending:
            if "video" not in _received_kinds(participant) or not participant.become_sink():
                still.append(participant)
        pending = still


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    participants = [LightParticipant(ParticipantConfig(
        args.url, args.room, f"sub{i:02d}", publish=False, audio=args.audio,
        transport_cc=args.transport_cc)) for i in range(args.count)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reading = set(readers(args.count, args.sinks))
    sinking = asyncio.ensure_future(_sink_when_flowing(
        [p for index, p in enumerate(participants) if index not in reading]))
    try:
        for participant in participants:
            await participant.start()
        _reply({"started": True})
        frozen = False
        while line := await reader.readline():
            command = json.loads(line).get("command")
            if command == "waiting":
                reply = _waiting(participants, args.audio)
                if not reply["waiting"] and not frozen:
                    # Every peer connection now lives as long as the run: keep the cyclic
                    # collector from walking them again and again.
                    gc.freeze()
                    frozen = True
                _reply(reply)
            elif command == "sample":
                _reply(_sample(participants))
            elif command == "hide":
                hidden = {str(source): {"visible": False} for source in json.loads(line)["sources"]}
                for participant in participants:
                    await participant.signaling.send({"type": "set_constraints",
                                                      "sources": hidden})
                _reply({"hidden": len(hidden)})
            elif command == "stop":
                break
            else:
                _reply({"error": f"unknown command {command!r}"})
    except Exception as exc:  # reported to the parent, which fails the benchmark
        _reply({"started": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        sinking.cancel()
        await asyncio.gather(*(p.stop() for p in participants), return_exceptions=True)
        _reply({"stopped": True})


def main() -> int:
    parser = argparse.ArgumentParser(description="listening light participants (see "
                                                 "loadtest/subscriber_pool.py)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--transport-cc", action="store_true")
    parser.add_argument("--sinks", type=int, default=0)
    uvloop.run(_serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
