"""Bandwidth allocation across one subscriber's videos (sfu/allocator.py)."""

from __future__ import annotations

from sfu.allocator import UP_MARGIN, Candidate, LayerOption, SourceConstraints, allocate


def simulcast(source: str, *, current: int | None = None, max_height: int = 0,
              visible: bool = True, on_stage: bool = False,
              active: tuple[bool, bool, bool] = (True, True, True)) -> Candidate:
    layers = (
        LayerOption(0, 150_000, 180, active[0]),
        LayerOption(1, 500_000, 360, active[1]),
        LayerOption(2, 1_500_000, 720, active[2]),
    )
    return Candidate(source, layers, SourceConstraints(visible, max_height, on_stage), current)


def test_everyone_gets_the_top_layer_when_the_budget_allows() -> None:
    result = allocate([simulcast("a"), simulcast("b")], 10_000_000)
    assert result.layers == {"a": 2, "b": 2}
    assert result.reasons == {}


def test_tile_height_caps_the_layer() -> None:
    result = allocate([simulcast("a", max_height=200), simulcast("b", max_height=400)], 10**7)
    assert result.layers == {"a": 0, "b": 1}


def test_hidden_tiles_are_paused_and_cost_nothing() -> None:
    result = allocate([simulcast("a", visible=False), simulcast("b")], 2_000_000)
    assert result.layers == {"a": None, "b": 2}
    assert result.reasons == {"a": "hidden"}


def test_low_layers_for_all_before_high_layers_for_some() -> None:
    # 2 x 150k low layers fit; raising one to 500k (x1.15) would not leave room for both.
    budget = int(150_000 * UP_MARGIN * 2 + 100_000)
    result = allocate([simulcast("a"), simulcast("b")], budget)
    assert result.layers == {"a": 0, "b": 0}


def test_on_stage_source_is_raised_first() -> None:
    budget = 2_200_000
    result = allocate([simulcast("a"), simulcast("stage", on_stage=True)], budget)
    assert result.layers["stage"] == 2
    assert result.layers["a"] == 0


def test_what_does_not_fit_is_paused_for_bandwidth() -> None:
    result = allocate([simulcast("a"), simulcast("b")], 200_000)
    assert result.layers == {"a": 0, "b": None}
    assert result.reasons == {"b": "bandwidth"}


def test_the_first_visible_source_keeps_its_lowest_layer_on_a_collapsed_link() -> None:
    result = allocate([simulcast("hidden", visible=False), simulcast("a"), simulcast("b")],
                      50_000)
    assert result.layers == {"hidden": None, "a": 0, "b": None}
    assert result.reasons == {"hidden": "hidden", "b": "bandwidth"}


def test_hysteresis_keeps_a_layer_that_is_paid_for_without_margin() -> None:
    # Exactly the 500k layer plus a little: enough to stay, not enough to go up to it.
    budget = 520_000
    assert allocate([simulcast("a", current=1)], budget).layers == {"a": 1}
    assert allocate([simulcast("a", current=0)], budget).layers == {"a": 0}


def test_inactive_layers_are_skipped() -> None:
    result = allocate([simulcast("a", active=(True, True, False))], 10**7)
    assert result.layers == {"a": 1}
    result = allocate([simulcast("a", active=(False, False, False))], 10**7)
    assert result.layers == {"a": None} and result.reasons == {"a": "unavailable"}


def test_unseen_layers_are_assumed_twice_as_tall_as_the_one_below() -> None:
    layers = (LayerOption(0, 150_000, 180, True), LayerOption(1, 500_000, 360, True),
              LayerOption(2, 0, 0, True))  # the publisher has not sent 720p yet
    tall = Candidate("a", layers, SourceConstraints(max_height=1000))
    medium = Candidate("b", layers, SourceConstraints(max_height=500))
    assert allocate([tall], 10**7).layers == {"a": 2}
    assert allocate([medium], 10**7).layers == {"b": 1}
