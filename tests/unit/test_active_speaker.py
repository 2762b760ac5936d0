"""Dominant speaker detection (sfu/active_speaker.py) on synthetic level traces."""

from __future__ import annotations

from sfu.active_speaker import SWITCH_AFTER, DominantSpeaker

LOUD, QUIET = 90, 0  # loudness = 127 - RFC 6464 level


def feed(detector: DominantSpeaker, start: float, end: float,
         levels: dict[str, int]) -> list[tuple[float, str]]:
    """20 ms packets from every source, a decision every 100 ms; returns the changes."""
    changes = []
    now = start
    step = 0
    while now < end:
        for source, loudness in levels.items():
            detector.add(source, loudness, now)
        if step % 5 == 0:
            speaker = detector.tick(now)
            if speaker is not None:
                changes.append((now, speaker))
        now = round(now + 0.02, 6)
        step += 1
    return changes


def test_first_speaker_is_named_quickly() -> None:
    detector = DominantSpeaker()
    changes = feed(detector, 0.0, 1.0, {"a": LOUD, "b": QUIET})
    assert changes and changes[0][1] == "a" and changes[0][0] <= 0.5


def test_switches_when_the_other_takes_over_and_not_before_the_hold() -> None:
    detector = DominantSpeaker()
    feed(detector, 0.0, 2.0, {"a": LOUD, "b": QUIET})
    changes = feed(detector, 2.0, 4.0, {"a": QUIET, "b": LOUD})
    assert [speaker for _, speaker in changes] == ["b"]
    assert SWITCH_AFTER <= changes[0][0] - 2.0 <= 1.5


def test_a_200_ms_burst_does_not_move_the_stage() -> None:
    detector = DominantSpeaker()
    feed(detector, 0.0, 2.0, {"a": LOUD, "b": QUIET})
    changes = feed(detector, 2.0, 2.2, {"a": LOUD, "b": 120})  # b coughs, a goes on
    changes += feed(detector, 2.2, 4.0, {"a": LOUD, "b": QUIET})
    assert changes == []
    assert detector.current == "a"


def test_silence_names_nobody() -> None:
    detector = DominantSpeaker()
    assert feed(detector, 0.0, 2.0, {"a": 10, "b": QUIET}) == []
