"""Who is speaking: the dominant speaker of a room, from RFC 6464 audio levels.

Every audio packet carries its level (0 = loudest, 127 = silence, in -dBov).
The detector keeps a short history per source and names a new dominant
speaker only when a challenger has been clearly louder than the current one
for ``SWITCH_AFTER`` seconds, so a cough, a chair or a 200 ms burst never
moves the stage.
"""

from __future__ import annotations

from collections import deque

WINDOW = 0.5  # seconds of levels averaged per source
SPEECH_FLOOR = 30.0  # loudness (127 - level) under which a source counts as silent
MARGIN = 1.25  # a challenger must be this much louder than the current speaker
SWITCH_AFTER = 0.6  # seconds a challenger must lead before the stage moves
SILENCE_LEVEL = 127


class DominantSpeaker:
    """Dominant-speaker detection with hysteresis, fed packet by packet, decided by ticks."""

    def __init__(self) -> None:
        self._levels: dict[str, deque[tuple[float, int]]] = {}
        self.current: str | None = None
        self._challenger: str | None = None
        self._challenger_since = 0.0

    def add(self, source: str, loudness: int, now: float) -> None:
        history = self._levels.get(source)
        if history is None:
            history = self._levels[source] = deque()
        history.append((now, loudness))
        while history and now - history[0][0] > WINDOW:
            history.popleft()

    def remove(self, source: str) -> None:
        self._levels.pop(source, None)
        if self.current == source:
            self.current = None
        if self._challenger == source:
            self._challenger = None

    def _average(self, source: str, now: float) -> float:
        history = self._levels.get(source)
        if not history:
            return 0.0
        recent = [level for at, level in history if now - at <= WINDOW]
        return sum(recent) / len(recent) if recent else 0.0

    def tick(self, now: float) -> str | None:
        """Re-evaluate; returns the new dominant speaker when it changed, else None."""
        averages = {source: self._average(source, now) for source in self._levels}
        loudest = max(averages, key=lambda s: averages[s], default=None)
        if loudest is None or averages[loudest] < SPEECH_FLOOR or loudest == self.current:
            self._challenger = None
            return None
        current_level = averages.get(self.current, 0.0) if self.current else 0.0
        if averages[loudest] < current_level * MARGIN:
            self._challenger = None
            return None
        if self._challenger != loudest:
            self._challenger, self._challenger_since = loudest, now
            if self.current is not None:
                return None
        if self.current is not None and now - self._challenger_since < SWITCH_AFTER:
            return None
        self.current = loudest
        self._challenger = None
        return loudest
