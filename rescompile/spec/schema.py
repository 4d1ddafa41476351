"""The spec language as pydantic models: a ResNet written as the paper's stage table."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)

from rescompile.errors import SpecError
from rescompile.options import Initializer
from rescompile.spec.preprocessing import Number, Preprocessing

MAX_REPEAT = 1000
MAX_FILTERS = 65536
MAX_KERNEL = 15
MAX_SIZE = 4096

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Count = Annotated[StrictInt, Field(ge=1)]


MAX_GROUPS = 4096


def _check_row(row: tuple[int, ...]) -> tuple[int, ...]:
    kernel, filters, *rest = row
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and positive, got {kernel}")
    if kernel > MAX_KERNEL:
        raise ValueError(f"kernel must be at most {MAX_KERNEL}, got {kernel}")
    if not 1 <= filters <= MAX_FILTERS:
        raise ValueError(f"filters must be between 1 and {MAX_FILTERS}, got {filters}")
    if rest and not (1 <= rest[0] <= MAX_GROUPS and filters % rest[0] == 0):
        raise ValueError(f"groups must divide the {filters} filters, got {rest[0]}")
    return row


_ROW_JSON_SCHEMA = {
    "type": "array",
    "description": "One row of the paper's table: [kernel, filters] or [kernel, filters, groups].",
    "prefixItems": [
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_KERNEL,
            "not": {"multipleOf": 2},
            "description": "kernel (odd)",
        },
        {"type": "integer", "minimum": 1, "maximum": MAX_FILTERS, "description": "filters"},
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_GROUPS,
            "description": "groups: a grouped convolution (ResNeXt's cardinality C); 1 if omitted",
        },
    ],
    "minItems": 2,
    "maxItems": 3,
    "examples": [[3, 64], [3, 128, 32]],
}
"""What `_check_row` checks, as JSON Schema (pydantic cannot see inside a validator)."""

ConvRow = Annotated[
    tuple[StrictInt, StrictInt] | tuple[StrictInt, StrictInt, StrictInt],
    AfterValidator(_check_row),
    WithJsonSchema(_ROW_JSON_SCHEMA),
]
"""One row of the paper's table: `[kernel, filters]`, or `[kernel, filters, groups]` for a grouped
convolution (ResNeXt's `3x3, 128, C=32` is `[3, 128, 32]`)."""


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are not silently coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Input(Strict):
    """The image the network expects."""

    size: Annotated[StrictInt, Field(ge=1, le=MAX_SIZE)]
    channels: Annotated[StrictInt, Field(ge=1, le=64)] = 3


class StemConv(Strict):
    """A stand-alone convolution of the stem, normally followed by BN and ReLU."""

    conv: ConvRow
    stride: Annotated[StrictInt, Field(ge=1, le=4)] = 1
    bn: bool = True
    relu: bool = True
    name: Identifier | None = None


class StemPool(Strict):
    """A max-pooling layer of the stem (padded by kernel // 2)."""

    maxpool: Annotated[StrictInt, Field(ge=1, le=MAX_KERNEL)]
    stride: Annotated[StrictInt, Field(ge=1, le=4)] = 1
    name: Identifier | None = None


class StemUpsample(Strict):
    """Nearest-neighbour upsampling of the input (e.g. CIFAR images for an ImageNet backbone)."""

    upsample: Annotated[StrictInt, Field(ge=2, le=8)]
    name: Identifier | None = None


def _kind_by_key(data: object, kinds: dict[str, str], default: str) -> str:
    """The tag of a union member, from the key that only that member has."""
    keys = data if isinstance(data, dict) else getattr(data, "__dict__", {})
    return next((tag for key, tag in kinds.items() if key in keys), default)


StemLayer = Annotated[
    Annotated[StemConv, Tag("StemConv")]
    | Annotated[StemPool, Tag("StemPool")]
    | Annotated[StemUpsample, Tag("StemUpsample")],
    Discriminator(
        lambda data: _kind_by_key(data, {"maxpool": "StemPool", "upsample": "StemUpsample"}, "StemConv")
    ),
]


class Stage(Strict):
    """One row group of the paper's table: `conv3_x`, its output size, block and repeat count."""

    name: Identifier
    output: Annotated[StrictInt, Field(ge=1, le=MAX_SIZE)]
    block: Annotated[list[ConvRow], Field(min_length=1, max_length=8)]
    repeat: Annotated[StrictInt, Field(ge=1, le=MAX_REPEAT)]


class HeadFlatten(Strict):
    """Flatten the feature map into a vector."""

    flatten: Literal[True]


class HeadDense(Strict):
    """A fully connected layer."""

    dense: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    activation: Literal["relu", "softmax", "linear"] = "relu"


class HeadDropout(Strict):
    """Dropout (identity at inference)."""

    dropout: Annotated[Number, Field(ge=0, lt=1)]


class HeadBatchNorm(Strict):
    """BatchNormalization of a vector."""

    batchnorm: Literal[True]


HeadLayer = Annotated[
    Annotated[HeadFlatten, Tag("HeadFlatten")]
    | Annotated[HeadDense, Tag("HeadDense")]
    | Annotated[HeadDropout, Tag("HeadDropout")]
    | Annotated[HeadBatchNorm, Tag("HeadBatchNorm")],
    Discriminator(
        lambda data: _kind_by_key(
            data,
            {"flatten": "HeadFlatten", "dropout": "HeadDropout", "batchnorm": "HeadBatchNorm"},
            "HeadDense",
        )
    ),
]


class Head(Strict):
    """The classifier: global pooling and a fully connected layer (classes 0: no classifier), or
    `layers` of flatten/dense/dropout/batchnorm whose last dense has `classes` units."""

    pool: Literal["avg", "max", "none"] = "avg"
    classes: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1000
    activation: Literal["softmax", "linear"] = "softmax"
    layers: Annotated[list[HeadLayer], Field(min_length=1, max_length=32)] | None = None
    class_names: Literal["imagenet"] | None = None
    """A list of class names shipped with rescompile: `imagenet`, the 1,000 ILSVRC-2012 classes in
    keras.applications' order (predictions then read "tabby", not 281)."""


class SqueezeExcitation(Strict):
    """Squeeze-and-excitation (Hu et al. 2018): each block's residual scaled per channel by
    sigmoid(fc(relu(fc(global average pool)))), the first fc reducing the channels `ratio` times."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ratio": 16, "position": "standard"}]})

    ratio: Annotated[StrictInt, Field(ge=1, le=MAX_FILTERS)] = 16
    """The reduction of the gate's first fc (Hu et al.: 16)."""
    position: Literal["standard", "pre", "post"] = "standard"
    """Where in the block (Hu et al. Fig. 5): `standard` on the residual before the sum, `pre` on
    the residual branch's input, `post` after the sum."""


class ChannelAttentionOption(Strict):
    """Efficient channel attention (Wang et al. 2020, ECA-Net): each block's residual scaled per
    channel by sigmoid(conv1d(global average pool)), a 1-D convolution across channels without
    bias; its kernel adapts to the C channels as k = |t|odd, t = log2(C) / gamma + beta / gamma."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"gamma": 2, "beta": 1}]})

    gamma: Annotated[StrictInt, Field(ge=1, le=16)] = 2
    beta: Annotated[StrictInt, Field(ge=0, le=16)] = 1
    rounding: Literal["nearest", "up"] = "nearest"
    """`nearest`: the paper's |t|odd, the odd number nearest t, a tie going down (k = 5 at 256 to
    2048 channels: the 80 parameters Wang et al. add to ResNet-50); `up`: int(t) made odd upwards,
    as the ECA-Net code and timm compute it (k = 7 at 2048 channels; timm's ecaresnet checkpoints)."""
    kernel: Annotated[StrictInt, Field(ge=1, le=MAX_FILTERS, multiple_of=1)] | None = None
    """A fixed odd kernel size for every block instead of the adaptive one."""

    @model_validator(mode="after")
    def _odd(self) -> ChannelAttentionOption:
        if self.kernel is not None and self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (centred on its channel), got {self.kernel}")
        return self


class StochasticDepth(Strict):
    """Stochastic depth (Huang et al. 2016): in training, each block's residual survives with
    probability p_l (else the block is the identity); at inference every residual is kept.
    `linear`: p_l = 1 - l / L * (1 - survival) over the network's L blocks (the paper's rule);
    `uniform`: p_l = survival."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"survival": 0.5, "rule": "linear"}, {"survival": 0.8, "rule": "uniform"}]
        }
    )

    survival: Annotated[Number, Field(gt=0, le=1)] = 0.5
    """The last block's survival probability p_L (`linear`) or every block's (`uniform`)."""
    rule: Literal["linear", "uniform"] = "linear"


MAX_WIDTH = 64
"""The largest width multiplier (published ones: k <= 12)."""


RESERVED_STAGE_NAMES = frozenset({"input", "stem", "head"})
"""Names of the parts every network has: no stage of the table may take them."""


class Options(Strict):
    """The published variants, as switches."""

    residual: Literal["post-activation", "pre-activation"] = "post-activation"
    shortcut: Literal["A", "B", "C", "none"] = "B"
    shortcut_bn: bool = True
    batchnorm: bool = True
    strided_identity: Literal["project", "maxpool"] = "project"
    downsample: Annotated[Literal["first-conv", "3x3"], Field(examples=["3x3"])] = "first-conv"
    """Which conv of a downsampling block has the stride: `first-conv` (He et al. 2015: the first
    1x1 of a bottleneck) or `3x3`, the first spatial conv (torchvision's "v1.5", ResNeXt, ResNet-D)."""
    stride_block: Literal["first", "last"] = "first"
    conv_bias: Literal["none", "all", "unnormalized"] = "none"
    bn_epsilon: Annotated[Number, Field(gt=0, lt=1)] = 1e-5
    bn_momentum: Annotated[Number, Field(gt=0, lt=1)] = 0.9
    weight_decay: Annotated[Number, Field(ge=0, lt=1)] = 0.0
    initializer: Initializer = "he_normal"
    dropout: Annotated[Number, Field(ge=0, lt=1, examples=[0.3])] = 0.0
    """Dropout rate between a block's convolutions, after each inner ReLU (Wide ResNet: 0.3); 0: none."""
    width: Annotated[StrictInt, Field(ge=1, le=MAX_WIDTH, exclude=True, examples=[2, 10])] = 1
    """Width multiplier k (Zagoruyko & Komodakis 2016): every block row's filters times k, but for
    a block's last 1x1 (a bottleneck's expansion keeps the block's output width). WRN-d-k is the
    CIFAR table with `width: k`; torchvision's wide_resnet50_2 is ResNet-50's with `width: 2`. An
    integer, as the papers' k: widened filters stay whole and divisible by a row's groups. Applied
    when the spec is read: a resolved spec (spec.json, a model's record) holds the widened table."""
    se: Annotated[SqueezeExcitation | None, Field(examples=[{"ratio": 16}])] = None
    """Squeeze-and-excitation in every block (SE-ResNet)."""
    eca: Annotated[ChannelAttentionOption | None, Field(examples=[{"gamma": 2, "beta": 1}])] = None
    """Efficient channel attention on every block's residual before the sum (ECA-Net)."""
    stochastic_depth: Annotated[StochasticDepth | None, Field(examples=[{"survival": 0.5}])] = None
    """Drop whole residuals in training (drop-path); vanishes at inference and in ONNX."""
    avg_down: Annotated[bool, Field(examples=[True])] = False
    """ResNet-D (He et al. 2019): a strided projection shortcut averages `stride` x `stride`
    windows first, then its 1x1 conv has stride 1 (no input is skipped)."""


class Preprocess(Preprocessing, Strict):
    """What the model expects of its input: x' = (x * scale - mean) / std, per channel."""

    mean: list[Number] | Literal["per-pixel"] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[Annotated[Number, Field(gt=0)]] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    crop: Annotated[Number, Field(gt=0, le=1)] = 1.0
    """The central square kept, as a fraction of the shorter side, before resizing to the input
    (0.875: ImageNet's resize 256, crop 224; 1: the whole image resized)."""


class Expectation(Strict):
    """A published number and how closely the compiled network must reproduce it.

    `rel`: relative tolerance; `sig`: equal after rounding to this many significant figures;
    neither: exact.
    """

    value: Annotated[Number, Field(ge=0)]
    rel: Annotated[Number, Field(ge=0, lt=1)] | None = None
    sig: Annotated[StrictInt, Field(ge=1, le=12)] | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _one_tolerance(self) -> Expectation:
        if self.rel is not None and self.sig is not None:
            raise ValueError("give either rel or sig, not both")
        return self


def _as_list(value: object) -> object:
    return value if isinstance(value, list) else [value]


ExpectList = Annotated[list[Expectation], Field(min_length=1)]


class Expect(Strict):
    """Published numbers: `params` (trainable, torchvision's convention), `params_total`
    (with BatchNorm moving statistics, Keras' `count_params()`), `params_conv_fc` (convolutions
    and fc only), `macs` (multiply-adds), `depth` (weighted layers on the main path)."""

    params: ExpectList | None = None
    params_total: ExpectList | None = None
    params_conv_fc: ExpectList | None = None
    macs: ExpectList | None = None
    depth: ExpectList | None = None
    test_error: Annotated[Number, Field(ge=0, le=100)] | None = None
    """The paper's test error (%), shown next to runs trained on `test_dataset`; `check` cannot
    verify it."""
    test_dataset: Literal["cifar10", "cifar100", "imagenet"] | None = None
    """The dataset `test_error` was measured on (required with it)."""

    @model_validator(mode="before")
    @classmethod
    def _single_to_list(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        fixed = {}
        for key, value in data.items():
            if key in ("test_error", "test_dataset"):
                fixed[key] = value
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = {"value": value}
            fixed[key] = _as_list(value) if isinstance(value, (dict, list)) else value
        return fixed

    @model_validator(mode="after")
    def _error_names_its_dataset(self) -> Expect:
        if self.test_error is not None and self.test_dataset is None:
            raise ValueError("test_error needs test_dataset (cifar10, cifar100 or imagenet)")
        return self

    def test_error_on(self, dataset: str) -> float | None:
        """The published test error (%) for a run on `dataset`: None unless it is the paper's."""
        return self.test_error if dataset == self.test_dataset else None


class Bound(Strict):
    """A one-sided limit (or two): the network's count must be at most `max` and at least `min`."""

    max: Annotated[Number, Field(ge=0)] | None = None
    min: Annotated[Number, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> Bound:
        if self.max is None and self.min is None:
            raise ValueError("give max, min or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Budget(Strict):
    """Limits the compiled network must stay within, checked by `check` and `diff` ("over budget"):
    unlike `expect:` they are one-sided, so a cheaper network is within a `max`. Metrics as in
    `rescompile table`: `params`, `params_total`, `macs`, `flops` (2 x macs), `activations`
    (values of every layer's output, per image), `depth`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"macs": {"max": 4.2e9}, "params": {"max": 26e6}}]}
    )

    params: Bound | None = None
    params_total: Bound | None = None
    macs: Bound | None = None
    flops: Bound | None = None
    activations: Bound | None = None
    depth: Bound | None = None


def _widen_stage(stage: object, width: int) -> object:
    """A stage as written with its rows' filters times `width`, but for a last 1x1 (a bottleneck's
    expansion); malformed rows are left as they are, for validation to reject."""
    if not isinstance(stage, dict) or not isinstance(stage.get("block"), list):
        return stage
    rows = stage["block"]

    def widen(index: int, row: object) -> object:
        if not (isinstance(row, list) and len(row) >= 2 and all(type(item) is int for item in row)):
            return row
        if index == len(rows) - 1 and row[0] == 1:
            return row
        return [row[0], row[1] * width, *row[2:]]

    return {**stage, "block": [widen(index, row) for index, row in enumerate(rows)]}


FeatureName = Annotated[str, StringConstraints(pattern=r"^C[1-9]$")]


class Spec(Strict):
    """A residual network as the paper's stage table."""

    name: Identifier
    source: str
    description: str | None = None
    input: Input
    stem: Annotated[list[StemLayer], Field(min_length=1, max_length=16)]
    stages: Annotated[list[Stage], Field(min_length=1, max_length=16)]
    head: Head = Head()
    options: Options = Options()
    preprocess: Preprocess = Preprocess()
    outputs: list[FeatureName] = Field(default_factory=list)
    expect: Expect = Expect()
    budget: Budget = Budget()

    @model_validator(mode="before")
    @classmethod
    def _apply_width(cls, data: object) -> object:
        """Widen the table as written by `options.width` (a mapping, as read from a file or JSON)
        before it is validated, so that a widened row out of range is reported at its line; an
        invalid width is left for its field to report."""
        if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
            return data
        width = data["options"].get("width", 1)
        if type(width) is not int or not 1 < width <= MAX_WIDTH or not isinstance(data.get("stages"), list):
            return data
        return {
            **data,
            "options": {**data["options"], "width": 1},
            "stages": [_widen_stage(stage, width) for stage in data["stages"]],
        }

    _file: str = PrivateAttr(default="<spec>")
    _positions: dict[tuple, tuple[str, int]] = PrivateAttr(default_factory=dict)

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError for the field at `path`, located at the line it was written on."""
        return located_error(self._file, self._positions, path, message)


def field_path(path: tuple) -> str:
    """Render ("stages", 2, "block", 1) as `stages[2].block[1]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def located_error(file: str, where: dict[tuple, tuple[str, int]], path: tuple, message: str) -> SpecError:
    """Build a SpecError naming the file and line of the longest known prefix of `path`."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in where:
            source_file, line = where[path[:cut]]
            return SpecError(source_file, line, field_path(path), message)
    return SpecError(file, None, field_path(path), message)
