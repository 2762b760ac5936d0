"""The capacity report's files, from synthetic steps (the ramp itself is a manual run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.capacity import Step, write_report
from signaling import cli


def test_report_names_what_was_held_and_what_broke(tmp_path: Path) -> None:
    steps = [Step(4, 16, 2000.0, 30.0, 24.0, 0.0, 0.0, 550.0, 0, None),
             Step(8, 32, 4100.0, 55.0, 48.0, 0.1, 0.5, 700.0, 0, None),
             Step(12, 48, 5000.0, 90.0, 99.0, 4.2, 3.0, 900.0, 0, "loss 4.20 % > 2 %")]
    write_report(steps, tmp_path / "cap", "python -m loadtest.capacity --step-rooms 4")
    summary = json.loads((tmp_path / "cap.json").read_text())
    assert summary["participants_held"] == 32
    assert summary["first_broken"] == "loss 4.20 % > 2 %"
    assert len(summary["steps"]) == 3
    html = (tmp_path / "cap.html").read_text()
    assert "<svg" in html and html.count("<polyline") == 3
    assert "participants held: 32" in html


def test_visio_loadtest_capacity_is_the_ramp_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``visio loadtest capacity`` hands its options to loadtest.capacity (a real parse)."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["loadtest", "capacity", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: visio loadtest capacity") and "--max-rooms" in out
    with pytest.raises(SystemExit) as exited:
        cli.main(["loadtest", "ramp"])  # only capacity exists
    assert exited.value.code == 2
