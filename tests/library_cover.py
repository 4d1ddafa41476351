"""Which library specs a default test run builds: the smallest set, taken smallest graph first,
that holds every part the Keras printer writes (each block function, each stem and head shape).
The others repeat parts a smaller spec covers, deeper or wider: they run with `-m slow`."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from rescompile.analysis.analyze import Analysis, analyze
from rescompile.keras_backend.printer import plan_module
from rescompile.spec.library import find_specs

_GROUPS = re.compile(r"groups=\d+")
"""A grouped convolution's cardinality is a width, like its filters: the same part."""


def _parts(analysis: Analysis) -> frozenset[str]:
    """The printed parts of a spec's module: its block functions' bodies (structure: names and
    filters print relative to the block), and its stem's and head's op sequences."""
    graph = analysis.network.whole
    plan = plan_module(graph)
    blocks = {_GROUPS.sub("groups=G", "\n".join(block.lines)) for block in plan.blocks}
    stages = {"stem": [], "head": []}
    for node in graph.nodes:
        if node.stage in stages:
            stages[node.stage].append(type(node).__name__)
    return frozenset(blocks | {f"{stage}: {' '.join(ops)}" for stage, ops in stages.items()})


@functools.cache
def _library() -> tuple[tuple[Path, frozenset[str]], ...]:
    """Every library spec with its parts, smallest graph first (parameters, then nodes)."""
    analyses = [(path, analyze(path)) for path in find_specs([Path("specs")])]
    analyses.sort(key=lambda item: (item[1].cost.params_total, len(item[1].graph.nodes), str(item[0])))
    return tuple((path, _parts(analysis)) for path, analysis in analyses)


@functools.cache
def covering() -> frozenset[Path]:
    """The specs that each bring a part no smaller spec has."""
    chosen, covered = set(), set()
    for path, parts in _library():
        if parts - covered:
            chosen.add(path)
            covered |= parts
    return frozenset(chosen)


def library_params() -> list:
    """Every library spec as a pytest parameter, marked slow unless it is in the covering set."""
    return [
        path if path in covering() else pytest.param(path, marks=pytest.mark.slow)
        for path in sorted(path for path, _ in _library())
    ]
