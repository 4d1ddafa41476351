"""Choice lists and defaults shared by the command line and the library, declared once.

Light on purpose (typing only): the CLI imports it before parsing arguments, and `--help` must not
pay for numpy, pydantic or TensorFlow.
"""

from __future__ import annotations

from typing import Literal, get_args

Provider = Literal["auto", "cuda", "cpu"]
"""onnxruntime's execution provider: auto is CUDA where it works, else the CPU."""

Layout = Literal["nhwc", "nchw"]
"""The input layout of an exported ONNX model (nhwc: Keras')."""

Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]
"""Keras mixed-precision policies training accepts."""

PrecisionChoice = Literal["auto", Precision]
"""`train --precision`: a policy, or auto (the fastest correct one here: rescompile/train/compute.py)."""

Initializer = Literal["he_normal", "he_uniform", "glorot_uniform"]
"""Convolution kernel initializers a spec (or an experiment's override) may name."""

TableFormat = Literal["md", "csv", "json"]
"""How `table` prints: Markdown, CSV or JSON."""

DiffFormat = Literal["md", "json", "csv", "github"]
"""How `diff` prints: Markdown, JSON, CSV, or GitHub workflow commands followed by Markdown."""

CheckFormat = Literal["text", "json"]
"""How `check` prints: a text report, or JSON."""

ReportFormat = Literal["md", "json"]
"""How `list`, `predict` and `bench` print: Markdown or JSON."""

LAYOUTS: tuple[str, ...] = get_args(Layout)
PRECISION_CHOICES: tuple[str, ...] = get_args(PrecisionChoice)

EVAL_BATCH = 256
"""Images per batch when evaluating (validation, test, `rescompile evaluate`)."""

GRADIENTS_BATCH = 32
"""The batch `experiment gradients` measures gradient norms on."""
