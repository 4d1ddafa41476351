"""What a model expects of its input pixels, one typed value from the spec to the served file:
x' = (x * scale - mean) / std after reordering RGB to BGR if asked, on the central `crop` of an
image. A spec states it per channel (`schema.Preprocess`); a trained run's record and an ONNX
file's `preprocess` metadata may hold a per-pixel (H, W, C) mean computed on the training set."""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt


def _finite(value: int | float) -> int | float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


Number = Annotated[StrictInt | StrictFloat, AfterValidator(_finite)]
"""An integer or a finite float: inf and nan (also `1e400`, which YAML reads as inf) are refused."""
Positive = Annotated[Number, Field(gt=0)]

Mean = Number | list[Number] | list[list[Number]] | list[list[list[Number]]] | Literal["per-pixel"]
"""A number, one per channel, or one per pixel (H, W, C); `per-pixel` before a run computes it."""
Std = Positive | list[Positive] | list[list[Positive]] | list[list[list[Positive]]]


class Preprocessing(BaseModel):
    """x' = (x * scale - mean) / std after reordering RGB to BGR if asked; `mean` is per channel,
    a per-pixel (H, W, C) array computed on the training set, or `per-pixel` not yet computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    color: Literal["RGB", "BGR"] = "RGB"
    scale: Positive = 1.0
    mean: Mean = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: Std = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    crop: Annotated[Number, Field(gt=0, le=1)] = 1.0
    """The central square kept (a fraction of the shorter side) before resizing to the input."""

    @property
    def trained(self) -> bool:
        """Whether the mean is known (a per-pixel one is computed by training)."""
        return self.mean != "per-pixel"

    def mean_array(self) -> np.ndarray:
        """The mean as float32, broadcastable to (H, W, C); a per-pixel mean not yet computed is 0."""
        return np.atleast_1d(np.asarray(self.mean if self.trained else 0.0, np.float32))

    def std_array(self) -> np.ndarray:
        """The std as float32, broadcastable to (H, W, C)."""
        return np.atleast_1d(np.asarray(self.std, np.float32))

    def as_float32(self) -> Preprocessing:
        """The same values as float32 numbers (what a run's tf.data pipeline computes with)."""
        return Preprocessing(
            color=self.color,
            scale=float(self.scale),
            mean=self.mean_array().tolist(),
            std=self.std_array().tolist(),
            crop=float(self.crop),
        )

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Float32 images (N, H, W, C) in 0..255 normalised, as NumPy. A per-pixel mean not yet
        computed is left to the model (models that need it carry it in their weights)."""
        x = images[..., ::-1] if self.color == "BGR" else images
        x = x * float(self.scale)
        if self.trained:
            x = x - np.asarray(self.mean, dtype=np.float32)
        return (x / np.asarray(self.std, dtype=np.float32)).astype(np.float32)

    def as_json(self) -> str:
        """As JSON, the form of an ONNX file's `preprocess` metadata and a run's preprocess.json."""
        return json.dumps(self.model_dump(mode="json"))
