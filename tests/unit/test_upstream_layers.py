"""Which simulcast encodings the publisher is asked to keep on."""

from __future__ import annotations

from sfu.upstream_layers import LAYER_OFF_AFTER, UpstreamLayers


def test_alone_in_the_room_a_publisher_keeps_only_its_lowest_encoding() -> None:
    layers = UpstreamLayers(3)
    assert layers.update(0, now=10.0) == (True, False, False)
    assert layers.update(0, now=11.0) is None  # told once, not every second


def test_a_subscriber_wanting_the_top_layer_turns_every_encoding_up_to_it_on_at_once() -> None:
    layers = UpstreamLayers(3)
    layers.update(0, now=10.0)
    assert layers.update(2, now=10.5) == (True, True, True)


def test_a_layer_goes_off_only_after_the_hold_so_a_wobbling_estimate_does_not_restart_it() -> None:
    layers = UpstreamLayers(3)
    layers.update(2, now=10.0)
    assert layers.update(1, now=10.0 + LAYER_OFF_AFTER / 2) is None
    assert layers.update(2, now=10.0 + LAYER_OFF_AFTER * 0.9) is None  # wanted again in time
    later = 10.0 + LAYER_OFF_AFTER * 0.9 + LAYER_OFF_AFTER + 0.1
    assert layers.update(1, now=later) == (True, True, False)
    assert layers.update(0, now=later + LAYER_OFF_AFTER + 0.1) == (True, False, False)


def test_out_of_range_wishes_are_clamped() -> None:
    layers = UpstreamLayers(2)
    assert layers.update(7, now=1.0) == (True, True)
    assert UpstreamLayers(2).update(-3, now=1.0) == (True, False)
