"""Distributed locust: one master and two workers on 127.0.0.1 drive one room."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, ServerProcess, free_port
from tests.loadtest.test_swarm import LOCUSTFILE, MILESTONES, read_stats

pytestmark = pytest.mark.media


def test_master_and_two_workers_add_up(visio_server: ServerProcess, tmp_path: Path) -> None:
    port = free_port()
    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    workers = [subprocess.Popen([*locust, "--worker", "--master-host", "127.0.0.1",
                                 "--master-port", str(port)], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(2)]
    try:
        master = subprocess.run(
            [*locust, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
             str(port), "--expect-workers", "2", "--headless", "-u", "6", "-r", "3", "-t", "16s",
             "--host", visio_server.base_url, "--csv", str(tmp_path / "dist"), "--only-summary",
             "--rooms", "1", "--participants-per-room", "6", "--publishers-per-room", "2",
             "--lt-workers", "2", "--room-prefix", "dist"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        worker_output = [w.communicate(timeout=30)[0] for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = master.stdout + master.stderr
    assert master.returncode == 0, output[-3000:] + "\n".join(o[-1500:] for o in worker_output)
    assert [w.returncode for w in workers] == [0, 0], worker_output
    stats = read_stats(tmp_path / "dist")
    for milestone in MILESTONES:
        assert stats[("join", milestone)]["Request Count"] == "6", milestone
    # One room of 6 with exactly 2 publishers across both workers (the numbering interleaves
    # them): 4 listeners x 2 videos + 2 publishers x 1 = 10 video tracks, sampled every 2 s.
    video = int(stats[("video", "bitrate_kbps")]["Request Count"])
    audio = int(stats[("audio", "bitrate_kbps")]["Request Count"])
    assert abs(video - audio) <= 10  # every publisher sends both (a track may start late)
    assert 10 * 4 <= video <= 10 * 9, video
    assert stats[("", "Aggregated")]["Failure Count"] == "0"
