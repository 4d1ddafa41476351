"""Weights keyed by IR node: where the backends and importers meet.

A store maps a node's name to its named arrays, in one layout whichever framework filled it:

  Conv           kernel (kh, kw, in / groups, out); bias (out) where the node has one
  BatchNorm      gamma, beta, mean, var (channels)
  Dense          kernel (in, out), bias (out)
  SqueezeExcite  reduce_kernel (1, 1, C, r), reduce_bias (r), expand_kernel (1, 1, r, C), expand_bias (C)
  ChannelAttention  kernel (k, 1, 1): the 1-D convolution across channels

Keras fills it from a model (keras_backend/weights.py); the ONNX emitter reads it; a torchvision or
timm checkpoint fills it by the names naming.py derives from the IR.
"""

from __future__ import annotations

import numpy as np

from rescompile import ir

NodeWeights = dict[str, np.ndarray]
WeightStore = dict[str, NodeWeights]


def parts(node: ir.Node) -> tuple[str, ...]:
    """The named arrays node `node` holds in a store (none for ops without weights)."""
    if isinstance(node, ir.Conv):
        return ("kernel", "bias") if node.bias else ("kernel",)
    if isinstance(node, ir.BatchNorm):
        return ("gamma", "beta", "mean", "var")
    if isinstance(node, ir.Dense):
        return ("kernel", "bias")
    if isinstance(node, ir.SqueezeExcite):
        return ("reduce_kernel", "reduce_bias", "expand_kernel", "expand_bias")
    if isinstance(node, ir.ChannelAttention):
        return ("kernel",)
    return ()
