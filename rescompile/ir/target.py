"""What a command compiles a spec for: its input, classifier and outputs."""

from __future__ import annotations

from dataclasses import dataclass

from rescompile.spec.schema import Spec


@dataclass(frozen=True, kw_only=True)
class Target:
    """The network a command asks of a spec; None (and include_top) keep the spec's own.

    `input_size`/`channels`: another input (the strides stay those of the spec's table);
    `classes`: another classifier width; `include_top=False`: the backbone only; `outputs`: stage
    outputs (C2, C3, ...) returned instead of the classifier (None: the spec's `outputs:`,
    empty: the classifier).
    """

    input_size: int | None = None
    channels: int | None = None
    classes: int | None = None
    include_top: bool = True
    outputs: tuple[str, ...] | None = None

    def outputs_of(self, spec: Spec) -> tuple[str, ...]:
        """The stage outputs asked for: the target's, else the spec's."""
        return tuple(spec.outputs) if self.outputs is None else self.outputs

    def keeps_network(self, spec: Spec) -> bool:
        """True when the target asks for the spec's own input, classifier and head."""
        return (
            self.input_size in (None, spec.input.size)
            and self.channels in (None, spec.input.channels)
            and self.classes in (None, spec.head.classes)
            and self.include_top
        )

    def is_published(self, spec: Spec) -> bool:
        """True when the target is the network the spec's published numbers describe."""
        return self.keeps_network(spec) and self.outputs_of(spec) == tuple(spec.outputs)


OWN = Target()
"""The spec's own network, with its `outputs:` if it names any."""

WHOLE = Target(outputs=())
"""The spec's own network with its classifier: what the generated module is printed from."""
