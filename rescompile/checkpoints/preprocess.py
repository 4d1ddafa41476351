"""The input preprocessing a torchvision or timm ImageNet checkpoint expects: RGB scaled to [0, 1],
normalised by ImageNet's mean and std, from a central crop of 0.875 of the shorter side (resize
256, crop 224); a timm `config.json` beside the file (the Hugging Face hub's layout) gives its
own crop, mean and std."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rescompile.checkpoints.state_dict import is_torch_checkpoint
from rescompile.spec.preprocessing import Preprocessing

IMAGENET = Preprocessing(
    color="RGB", scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], crop=0.875
)
MAX_CONFIG = 1_000_000
"""A timm config.json is a few kilobytes."""


def checkpoint_preprocess(weights: str | Path | None) -> Preprocessing | None:
    """The preprocessing of a PyTorch checkpoint; None for other files."""
    if weights is None or not is_torch_checkpoint(Path(weights)):
        return None
    return IMAGENET.model_copy(update=_timm_config(Path(weights).with_name("config.json")))


def _timm_config(path: Path) -> dict:
    """crop, mean and std from a timm config.json's `pretrained_cfg`, where present and sane."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG:
            return {}
        config = json.loads(path.read_text(encoding="utf-8")).get("pretrained_cfg", {})
    except (OSError, ValueError, RecursionError, AttributeError):
        return {}
    if not isinstance(config, dict):
        return {}
    found = {}
    crop = config.get("crop_pct")
    if _numbers([crop]) and 0 < crop <= 1:
        found["crop"] = float(crop)
    for field in ("mean", "std"):
        values = config.get(field)
        if isinstance(values, list) and len(values) == 3 and _numbers(values) and min(values) >= 0:
            found[field] = [float(v) for v in values]
    if min(found.get("std", [1.0])) == 0:
        del found["std"]
    return found


def _numbers(values: list) -> bool:
    return all(type(v) in (int, float) and math.isfinite(v) for v in values)
