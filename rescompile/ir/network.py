"""The compiled network: a spec lowered once for a command's target, passed down whole."""

from __future__ import annotations

from dataclasses import dataclass

from rescompile import ir
from rescompile.ir.lower import lower
from rescompile.ir.target import OWN, WHOLE, Target
from rescompile.spec.schema import Spec


@dataclass(frozen=True)
class Network:
    """A spec compiled for a target: the graph the command works on, and the whole network (the
    spec's own input and classifier, no stage outputs) that a generated module is printed from."""

    spec: Spec
    target: Target
    graph: ir.Graph
    whole: ir.Graph

    @property
    def name(self) -> str:
        """The network's name."""
        return self.spec.name

    @property
    def path(self) -> str:
        """The spec's file, as error messages name it."""
        return self.spec._file


def compile_network(spec: Spec, target: Target = OWN) -> Network:
    """Lower `spec` for `target`: the whole network once, and the target's graph from it (the same
    graph where the target keeps the spec's network)."""
    whole = lower(spec, WHOLE)
    return retarget(Network(spec, WHOLE, whole, whole), target)


def retarget(network: Network, target: Target) -> Network:
    """The compiled network for another target, its whole graph reused (a command that learns its
    target late, e.g. from the data, compiles its spec first and retargets it then)."""
    spec, whole = network.spec, network.whole
    if target.keeps_network(spec) and not target.outputs_of(spec):
        return Network(spec, target, whole, whole)
    return Network(spec, target, lower(spec, target, reference=whole), whole)
