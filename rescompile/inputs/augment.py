"""How training images are augmented (a recipe's `augment`): pad-and-crop, shifts, flips, random
erasing, ImageNet crops and lighting noise; read by the tf.data pipelines of `rescompile.inputs`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    """A recipe section: unknown keys and loose types refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Erasing(Strict):
    """Random erasing (Zhong et al.): probability, area fraction and aspect-ratio ranges."""

    p: Annotated[float, Field(ge=0, le=1)] = 0.5
    area: Annotated[list[Positive], Field(min_length=2, max_length=2)] = [0.02, 0.4]
    aspect: Annotated[list[Positive], Field(min_length=2, max_length=2)] = [0.3, 1 / 0.3]
    per_pixel: bool = False


class Crop(Strict):
    """ImageNet-style crops of images of any size, resized to the input size.

    random-resized: area fraction in `scale`, aspect ratio in `ratio` (Szegedy et al. 2015);
    scale-jitter: the shorter side resized to a size in `sizes`, a random 224 crop (He et al. 2015).
    """

    kind: Literal["random-resized", "scale-jitter"] = "random-resized"
    scale: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=2, max_length=2)] = [
        0.08,
        1.0,
    ]
    ratio: Annotated[list[Positive], Field(min_length=2, max_length=2)] = [0.75, 4 / 3]
    sizes: Annotated[list[Annotated[int, Field(ge=224, le=4096)]], Field(min_length=2, max_length=2)] = [
        256,
        480,
    ]

    @model_validator(mode="after")
    def _ordered_ranges(self) -> Crop:
        for name in ("scale", "ratio", "sizes"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be [low, high], got [{low}, {high}]")
        return self


class Augment(Strict):
    """Augmentation: pad-and-crop (paper), shifts (Keras example), flips, random erasing;
    ImageNet crops and AlexNet's PCA lighting noise (its standard deviation, 0.1 in the paper)."""

    pad_crop: Annotated[int, Field(ge=0, le=16)] = 0
    shift: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    flip: bool = False
    erasing: Erasing | None = None
    crop: Crop | None = None
    lighting: Annotated[float, Field(ge=0, le=1)] = 0.0
