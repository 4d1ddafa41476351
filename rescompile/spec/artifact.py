"""What a model file made by rescompile carries: its resolved spec, how it was built, and the
preprocessing its inputs need (a trained run's per-pixel mean included).

A `.keras` file holds the record as `rescompile.json`, one more member of its zip archive (plain
`keras.saving.load_model` ignores it); an `.onnx` file holds it in its metadata under `rescompile`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rescompile.errors import RescompileError
from rescompile.spec.preprocessing import Preprocessing
from rescompile.spec.schema import MAX_SIZE, FeatureName

MEMBER = "rescompile.json"
MAX_RECORD_BYTES = 64 * 2**20


class ModelRecord(BaseModel):
    """Everything a later command needs to know about a model file, without a specs/ folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: dict[str, Any]
    input_size: Annotated[int, Field(ge=1, le=MAX_SIZE)]
    channels: Annotated[int, Field(ge=1, le=64)]
    classes: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    include_top: bool = True
    outputs: list[FeatureName] = Field(default_factory=list)
    preprocess: Preprocessing = Preprocessing()
    class_names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModelRecord:
        """Class names one per class; a mean and std that broadcast to one input image."""
        if self.class_names and self.classes is not None and len(self.class_names) != self.classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.classes} classes")
        image = (self.input_size, self.input_size, self.channels)
        for field in ("mean", "std"):
            value = getattr(self.preprocess, field)
            if value == "per-pixel":
                continue
            try:
                shape = np.asarray(value, np.float64).shape
            except ValueError:
                raise ValueError(f"preprocess.{field} is a ragged array") from None
            if len(shape) == 1 and shape[0] not in (1, 3, self.channels):  # 3: a spec's RGB values
                raise ValueError(f"preprocess.{field} has {shape[0]} values for {self.channels} channels")
            if len(shape) > 1 and shape not in ((1, 1, self.channels), image):
                raise ValueError(f"preprocess.{field} has shape {shape}; the input image is {image}")
        return self


def record_from_text(text: str, source: str) -> ModelRecord:
    """Parse and validate a record; a damaged or foreign one is a one-line error naming `source`."""
    try:
        return ModelRecord.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(map(str, error["loc"])) or "record"
        raise RescompileError(f"{source}: damaged rescompile record ({where}: {error['msg']})") from None


def add_to_keras_file(path: Path, record: ModelRecord) -> None:
    """Append the record to a freshly saved .keras archive."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(MEMBER, record.model_dump_json())


def read_keras_record(path: Path) -> ModelRecord | None:
    """The record of a .keras file, or None for a file that rescompile did not write."""
    try:
        with zipfile.ZipFile(path) as archive:
            if MEMBER not in archive.namelist():
                return None
            if archive.getinfo(MEMBER).file_size > MAX_RECORD_BYTES:
                raise RescompileError(f"{path}: rescompile record too large")
            text = archive.read(MEMBER).decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile) as exc:
        raise RescompileError(f"{path}: not a readable .keras file ({exc})") from None
    return record_from_text(text, str(path))


def onnx_metadata(record: ModelRecord) -> str:
    """The record as the ONNX metadata value."""
    return record.model_dump_json()
