"""Data climbs back up the layers at most a few times on its trip through a command (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trips import Step, climbs, collapse, export_trip, gradients_trip, shown, train_trip

MOST_CLIMBS = 4
"""Issue 20's target."""


def _assert_few_climbs(steps: list[Step]) -> None:
    assert steps, "the datum was never passed to a rescompile function"
    assert climbs(steps) <= MOST_CLIMBS, f"{climbs(steps)} climbs:\n{shown(steps)}"


def test_climbs_count_steps_to_a_strictly_higher_layer() -> None:
    steps = [("cli", "a", 11), ("spec", "b", 1), ("ir", "c", 2), ("ir", "d", 2), ("errors", "e", 0)]
    steps += [("spec", "f", 1), ("cli", "g", 11), ("train", "h", 8)]
    assert climbs(steps) == 3  # 1 -> 2, 0 -> 1, 1 -> 11; same layer and downward steps are not climbs
    assert climbs([]) == climbs(steps[:1]) == 0


def test_collapse_drops_consecutive_repeats_only() -> None:
    a, b = ("m", "f", 1), ("m", "g", 1)
    assert collapse([a, a, b, a]) == [a, b, a]


@pytest.mark.slow
def test_train_options_climb_back_rarely(tmp_path: Path) -> None:
    _assert_few_climbs(train_trip(tmp_path))


def test_export_source_climbs_back_rarely(tmp_path: Path) -> None:
    _assert_few_climbs(export_trip(tmp_path))


def test_gradients_specs_climb_back_rarely(tmp_path: Path) -> None:
    _assert_few_climbs(gradients_trip(tmp_path))
