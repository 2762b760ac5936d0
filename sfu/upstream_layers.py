"""Which simulcast encodings a publisher should keep encoding.

A teacher's tablet encoding 720p that nobody watches wastes its upload and its
battery. The SFU tells the publisher (``publish_layers``, docs/protocol.md)
to switch off the encodings above the highest one any subscriber targets,
and to switch them back on as soon as one does. The REMB the SFU sends
upstream caps the same way; the explicit signal also stops the encoder.

A layer stays on for ``LAYER_OFF_AFTER`` after the last subscriber stopped
wanting it, so a subscriber whose estimate wobbles between two layers does
not make the publisher stop and restart an encoder (each restart costs a
keyframe and a ramp-up). The lowest layer is never switched off: it is what
a new subscriber starts on, and the fallback when a link collapses.
"""

from __future__ import annotations

LAYER_OFF_AFTER = 5.0  # seconds a layer stays on after the last subscriber stopped wanting it


class UpstreamLayers:
    """The on/off list of one simulcast source, with the hold-off before a switch-off."""

    __slots__ = ("_wanted_until", "told")

    def __init__(self, count: int) -> None:
        self._wanted_until = [0.0] * count
        self.told: tuple[bool, ...] | None = None  # what the publisher was last asked

    def update(self, highest_wanted: int, now: float) -> tuple[bool, ...] | None:
        """The new list when the publisher must be told something new, else None."""
        wanted_until = self._wanted_until
        for index in range(min(max(highest_wanted, 0), len(wanted_until) - 1) + 1):
            wanted_until[index] = now + LAYER_OFF_AFTER
        active = tuple(index == 0 or now < until for index, until in enumerate(wanted_until))
        if active == self.told:
            return None
        self.told = active
        return active
