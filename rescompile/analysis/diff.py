"""Diffs of networks' costs: stages matched by name (stem, the table's stages, head), networks of
two folders matched by `name:`; a stage or network only on one side is added or removed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from rescompile.analysis.analyze import Analysis, analyze_network
from rescompile.analysis.cost import Cost, node_cost
from rescompile.errors import RescompileError, printable
from rescompile.ir.network import compile_network
from rescompile.spec import load_spec
from rescompile.spec.operands import Operand, SpecRef

ADDED, REMOVED, CHANGED, UNCHANGED = "added", "removed", "changed", "unchanged"

Where = tuple[str, int]


@dataclass(frozen=True)
class PartDiff:
    """One stage (or one block of a stage) on both sides; None where a side lacks it."""

    name: str
    status: str
    old: Cost | None
    new: Cost | None
    where: Where | None
    """The file and line that write it: in the new spec, in the old one when removed."""
    blocks: list[PartDiff] = field(default_factory=list)
    """Per-block rows of a changed stage, when asked for."""


@dataclass(frozen=True)
class NetworkDiff:
    """One network on both sides, with its stages."""

    name: str
    status: str
    old: Analysis | None
    new: Analysis | None
    stages: list[PartDiff]

    @property
    def label(self) -> str:
        """The network's name; `old -> new` when two differently named networks were compared."""
        names = [a.spec.name for a in (self.old, self.new) if a is not None]
        return " -> ".join(names) if len(set(names)) > 1 else names[0]

    @property
    def where(self) -> Where | None:
        """Where the network's name is written: in the new spec, else the old."""
        side = self.new or self.old
        return side.spec._positions.get(("name",)) if side else None


def _status(old: object, new: object, same: bool) -> str:
    if old is None:
        return ADDED
    if new is None:
        return REMOVED
    return UNCHANGED if same else CHANGED


def _stage_where(analysis: Analysis, stage: str) -> Where | None:
    positions = analysis.spec._positions
    for index, table_stage in enumerate(analysis.spec.stages):
        if table_stage.name == stage:
            return positions.get(("stages", index))
    return positions.get((stage,)) or positions.get(("name",))


def block_costs(analysis: Analysis) -> dict[str, dict[str, Cost]]:
    """Costs per block of each stage of the table, blocks named `<stage> block <n>`."""
    blocks: dict[str, dict[str, Cost]] = {}
    graph = analysis.graph
    for node in graph.nodes:
        if node.block:
            stage = blocks.setdefault(node.stage, {})
            name = f"{node.stage} block {node.block}"
            stage[name] = stage.get(name, Cost()) + node_cost(node, graph)
    return blocks


def _merged_names(old: Iterable[str], new: Iterable[str]) -> list[str]:
    """Names of both sides in the new side's order, each removed one after its old predecessor."""
    names = list(new)
    position = 0
    for name in old:
        if name in names:
            position = names.index(name) + 1
        else:
            names.insert(position, name)
            position += 1
    return names


def _parts(old: dict[str, Cost], new: dict[str, Cost], where: dict[str, Where | None]) -> list[PartDiff]:
    return [
        PartDiff(
            name,
            _status(old.get(name), new.get(name), old.get(name) == new.get(name)),
            old.get(name),
            new.get(name),
            where.get(name),
        )
        for name in _merged_names(old, new)
    ]


def diff_networks(old: Analysis | None, new: Analysis | None, per_block: bool = False) -> NetworkDiff:
    """Two compiled networks (either may be None: added or removed) compared stage by stage."""
    old_stages = old.stages if old else {}
    new_stages = new.stages if new else {}
    where = {name: _stage_where(old, name) for name in old_stages} if old else {}
    if new:
        where.update({name: _stage_where(new, name) for name in new_stages})
    stages = _parts(old_stages, new_stages, where)
    if per_block:
        old_blocks = block_costs(old) if old else {}
        new_blocks = block_costs(new) if new else {}
        stages = [
            PartDiff(
                s.name,
                s.status,
                s.old,
                s.new,
                s.where,
                _parts(old_blocks.get(s.name, {}), new_blocks.get(s.name, {}), {})
                if s.status == CHANGED
                else [],
            )
            for s in stages
        ]
    same = (
        old is not None
        and new is not None
        and old.cost == new.cost
        and all(stage.status == UNCHANGED for stage in stages)
    )
    name = (new or old).spec.name
    return NetworkDiff(name, _status(old, new, same), old, new, stages)


def _by_name(side: list[Analysis]) -> dict[str, Analysis]:
    found: dict[str, Analysis] = {}
    for analysis in side:
        twin = found.setdefault(analysis.spec.name, analysis)
        if twin is not analysis:
            raise RescompileError(
                f"{printable(twin.path)} and {printable(analysis.path)} both name the network"
                f" {analysis.spec.name!r}: networks are paired by name"
            )
    return found


def pair_by_name(old: list[Analysis], new: list[Analysis]) -> list[tuple[Analysis | None, Analysis | None]]:
    """Networks of two sides paired by `name:` (a renamed file with the same name is the same
    network), in the new side's order, the removed ones last."""
    old_by_name, new_names = _by_name(old), _by_name(new)
    pairs: list[tuple[Analysis | None, Analysis | None]] = [
        (old_by_name.get(analysis.spec.name), analysis) for analysis in new
    ]
    pairs += [(analysis, None) for analysis in old if analysis.spec.name not in new_names]
    return pairs


def _analyze(ref: SpecRef, memo: dict[str, Analysis]) -> Analysis:
    """A spec's analysis; one that resolves to the same spec as an earlier one (an unchanged file
    at both revisions) reuses its graph and costs."""
    spec = load_spec(ref.path, ref.files)
    key = spec.model_dump_json()
    if key not in memo:
        memo[key] = analyze_network(compile_network(spec))
    return replace(memo[key], network=replace(memo[key].network, spec=spec))


def _old_side(operand: Operand, memo: dict[str, Analysis], warnings: list[str]) -> list[Analysis]:
    """The old side of a comparison by name: a spec that no longer loads there (one this change
    may be fixing) is left out with a warning rather than failing the comparison."""
    side: dict[str, Analysis] = {}
    for ref in operand.refs:
        try:
            analysis = _analyze(ref, memo)
        except RescompileError as exc:
            warnings.append(f"{printable(str(exc))} (the old side's spec is invalid: left out)")
            continue
        twin = side.setdefault(analysis.spec.name, analysis)
        if twin is not analysis:
            warnings.append(
                f"{printable(analysis.path)} names the network {analysis.spec.name!r} as"
                f" {printable(twin.path)} does on the old side: left out"
            )
    return list(side.values())


def compare(
    pairs: list[tuple[Operand | None, Operand | None]], per_block: bool = False, by_name: bool = False
) -> tuple[list[NetworkDiff], list[str]]:
    """The networks of each pair of operands compared: two single files with each other (unless
    `by_name`), anything else by name; and the warnings about old specs left out. An invalid new
    spec is an error."""
    memo: dict[str, Analysis] = {}
    networks: list[NetworkDiff] = []
    warnings: list[str] = []
    for old, new in pairs:
        new_side = [_analyze(ref, memo) for ref in new.refs] if new else []
        if old and new and not (by_name or old.folder or new.folder):
            matched = [(_analyze(old.refs[0], memo), new_side[0])]
        else:
            matched = pair_by_name(_old_side(old, memo, warnings) if old else [], new_side)
        networks += [diff_networks(a, b, per_block) for a, b in matched]
    return networks, warnings
