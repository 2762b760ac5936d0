"""Sharing one subscriber's bandwidth across the videos it receives.

Modelled on Jitsi Videobridge's allocation: sources are ranked (on stage
first, then the others in the order the subscriber listed them); every
visible source first gets its lowest usable layer, then layers are raised one
step at a time in rank order while the estimate allows. What does not fit is
paused, and the subscriber is told, except the first visible source: it keeps
its lowest layer whatever the estimate says, so a collapsing link degrades
the picture to a thumbnail instead of blacking it out (and the estimate
still has media to measure). Audio is never allocated: it always flows.

Hysteresis keeps a tablet on flaky Wi-Fi from flapping: a source only moves
*up* to a layer when the budget exceeds that layer's cost by ``UP_MARGIN``;
it moves down as soon as the budget no longer covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UP_MARGIN = 1.15
# Bitrates assumed for layers that have not been measured yet (low to high),
# close to what browsers use for 180p / 360p / 720p simulcast.
DEFAULT_LAYER_BPS = (150_000, 500_000, 1_500_000, 2_500_000)


@dataclass(frozen=True)
class LayerOption:
    """One layer a source can be received at."""

    index: int
    bitrate: int  # bits per second, measured at the SFU's ingress
    height: int  # 0 when not known yet
    active: bool  # the publisher is sending it


@dataclass(frozen=True)
class SourceConstraints:
    """What the subscriber said about one source (its tile)."""

    visible: bool = True
    max_height: int = 0  # 0: no limit
    on_stage: bool = False


@dataclass(frozen=True)
class Candidate:
    source_id: str
    layers: tuple[LayerOption, ...]
    constraints: SourceConstraints = field(default_factory=SourceConstraints)
    current_layer: int | None = None  # what the subscriber receives now (None: paused)


@dataclass(frozen=True)
class Allocation:
    """The layer each source should be forwarded at; None means paused."""

    layers: dict[str, int | None]
    reasons: dict[str, str]  # for paused sources: "hidden", "bandwidth" or "unavailable"
    used_bps: int


def _heights(layers: tuple[LayerOption, ...]) -> list[int]:
    """Each layer's height, inferring unseen ones: simulcast layers double from one to the next."""
    heights = []
    below = 0
    for layer in layers:
        height = layer.height or below * 2
        heights.append(height)
        below = height
    return heights


def _usable_layers(candidate: Candidate) -> list[LayerOption]:
    """Active layers within the tile's height, lowest first (never empty if any is active)."""
    limit = candidate.constraints.max_height
    heights = _heights(candidate.layers)
    active = [(layer, height) for layer, height in zip(candidate.layers, heights, strict=True)
              if layer.active]
    if not limit:
        return [layer for layer, _ in active]
    fitting = [layer for layer, height in active if height and height <= limit]
    # Heights unknown yet, or every layer taller than the tile: the smallest one will do.
    return fitting or [layer for layer, _ in active][:1]


def _cost(layer: LayerOption, current: int | None) -> float:
    """What a layer may need: what it carries now, but at least a typical encoder's
    target for it, since a still picture that turns busy (a teacher walking to the
    board) brings a layer up to its cap within a second."""
    typical = DEFAULT_LAYER_BPS[min(layer.index, len(DEFAULT_LAYER_BPS) - 1)]
    bitrate = max(layer.bitrate, typical)
    if current is None or layer.index > current:
        return bitrate * UP_MARGIN
    return float(bitrate)


def allocate(candidates: list[Candidate], budget_bps: int) -> Allocation:
    """A layer per source within ``budget_bps``; ``candidates`` come in the subscriber's order."""
    ranked = sorted(candidates, key=lambda c: not c.constraints.on_stage)  # stable: keeps order
    layers: dict[str, int | None] = {}
    reasons: dict[str, str] = {}
    options: dict[str, list[LayerOption]] = {}
    spent: dict[str, float] = {}
    remaining = float(budget_bps)
    for candidate in ranked:
        source = candidate.source_id
        layers[source] = None
        if not candidate.constraints.visible:
            reasons[source] = "hidden"
            continue
        usable = _usable_layers(candidate)
        if not usable:
            reasons[source] = "unavailable"
            continue
        cost = _cost(usable[0], candidate.current_layer)
        first_visible = not options
        if cost > remaining and not first_visible:
            reasons[source] = "bandwidth"
            continue
        options[source] = usable
        layers[source] = usable[0].index
        spent[source] = cost
        remaining -= cost
    raised = True
    while raised:
        raised = False
        for candidate in ranked:
            source = candidate.source_id
            chosen = options.get(source)
            if not chosen:
                continue
            position = next(i for i, layer in enumerate(chosen) if layer.index == layers[source])
            if position + 1 >= len(chosen):
                continue
            step = _cost(chosen[position + 1], candidate.current_layer)
            if step - spent[source] > remaining:
                continue
            remaining -= step - spent[source]
            spent[source] = step
            layers[source] = chosen[position + 1].index
            raised = True
            if candidate.constraints.on_stage:
                break  # the stage takes every step it can before the others move
    return Allocation(layers=layers, reasons=reasons,
                      used_bps=int(budget_bps - remaining))
