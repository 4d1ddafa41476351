"""Weights keyed by IR node: where the backends and importers meet.

A store maps a node's name to its named arrays (the parts and shapes `Graph.weight_shapes` gives,
from each node class's `weight_shapes`), in one layout whichever framework filled it:

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

NodeWeights = dict[str, np.ndarray]
WeightStore = dict[str, NodeWeights]
