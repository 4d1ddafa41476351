"""The op registry: every IR node class has its entry in each backend's table (Keras printer and
helper, ONNX emitter and the pairs the recount counts once, cost rule), and the tables hold no
other classes. Adding an op is then: the node class, its lowering, and one entry per table."""

from __future__ import annotations

import pytest

from rescompile import ir
from rescompile.analysis.cost import COST_RULES
from rescompile.keras_backend.printer import KERAS_OPS
from rescompile.onnx_backend.emit import ONNX_OPS


def _node_classes() -> set[type[ir.Node]]:
    found, pending = set(), [ir.Node]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


@pytest.mark.parametrize("table", [KERAS_OPS, ONNX_OPS, COST_RULES], ids=["keras", "onnx", "cost"])
def test_every_node_class_has_exactly_one_entry(table: dict) -> None:
    classes = _node_classes()
    assert classes - set(table) == set(), "node classes without an entry"
    assert set(table) - classes == set(), "entries for classes that are no IR node"


def test_gates_pass_the_residual_branch_through() -> None:
    passing = {cls.__name__ for cls in _node_classes() if cls.passes_through}
    assert passing == {"SqueezeExcite", "DropPath", "ChannelAttention"}
