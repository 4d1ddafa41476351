"""`rescompile bench`: an ONNX model's throughput and latency at several batch sizes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from rescompile.errors import RescompileError
from rescompile.progress import Steps
from rescompile.serve.footprint import require_batch_memory
from rescompile.serve.runtime import (
    BenchRow,
    bench_session,
    input_geometry,
    metadata,
    open_session,
    run_session,
)

HEADER = "| batch | img/s | p50 ms | p99 ms | runs |\n|---:|---:|---:|---:|---:|"


def batch_sizes(text: str) -> list[int]:
    """`--batch-size 1,8,32` as a list of sizes, each in 1..4096."""
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        raise RescompileError(f"--batch-size must be comma-separated integers, got {text!r}") from None
    if not all(1 <= size <= 4096 for size in sizes):
        raise RescompileError(f"--batch-size values must be between 1 and 4096, got {text!r}")
    return sizes


class Bench:
    """One model opened for timing: its session, provider and input."""

    def __init__(self, model: Path, sizes: list[int], provider: str = "auto") -> None:
        self.model, self.sizes = model, sizes
        self.session = open_session(model, provider)
        self.provider = self.session.get_providers()[0]
        self.geometry = input_geometry(self.session, metadata(self.session, model), model)
        if self.geometry.batch is not None and set(sizes) != {self.geometry.batch}:
            exactly = self.geometry.batch
            raise RescompileError(f"{model}: takes batches of exactly {exactly}; pass --batch-size {exactly}")
        require_batch_memory(model, max(sizes), self.geometry.sample_shape, "--batch-size {} fits")

    def rows(self, seconds: float, warmup: int) -> Iterator[BenchRow]:
        """Time every batch size in turn (at least `seconds` each, after `warmup` runs)."""
        if not (0 < seconds <= 3600) or not (0 <= warmup <= 10_000):
            raise RescompileError("--seconds must be in (0, 3600] and --warmup in 0..10000")

        def run(x):
            return run_session(self.session, {self.geometry.name: x}, self.model)

        with Steps(f"bench {self.model.name}", len(self.sizes)) as steps:
            for size in self.sizes:
                steps.advance(f"batch size {size}")
                yield bench_session(run, self.geometry.sample_shape, size, seconds=seconds, warmup=warmup)


def markdown_row(row: BenchRow) -> str:
    cells = (row.batch, f"{row.images_per_second:.1f}", f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", row.runs)
    return "| " + " | ".join(map(str, cells)) + " |"


def as_json(bench: Bench, rows: list[BenchRow]) -> str:
    return json.dumps(
        {"model": str(bench.model), "provider": bench.provider, "rows": [asdict(row) for row in rows]},
        indent=2,
    )
