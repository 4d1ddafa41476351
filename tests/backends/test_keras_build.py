"""`rescompile build`, pretrained weights, feature outputs, channel adaptation, freezing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rescompile.errors import RescompileError
from rescompile.keras_backend.build import build_spec
from rescompile.keras_backend.model import freeze
from tests.keras_helpers import generated_model, randomize_batchnorm
from tests.numerics import assert_close_to_scale
from tests.reference import KERAS_APPS

keras = pytest.importorskip("keras")

SIZE = 64  # a reduced input keeps the suite fast; the layers and weights are those of 224x224


def _save_legacy_h5(model, path: Path) -> None:
    """Write weights in keras.applications' legacy HDF5 layout (layer_names, weight_names)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


class AppsWeights(dict):
    """For each keras.applications ResNet, built when first asked for: its weights file and its
    output (and its backbone's) on a fixed input."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.x = np.random.default_rng(1).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")

    def __missing__(self, spec: str) -> tuple:
        model = getattr(keras.applications, KERAS_APPS[spec])(weights=None, input_shape=(SIZE, SIZE, 3))
        randomize_batchnorm(model)
        path = self.folder / f"{spec}.h5"
        _save_legacy_h5(model, path)
        backbone = keras.Model(model.input, model.get_layer("avg_pool").input)
        self[spec] = (path, self.x, model.predict(self.x, verbose=0), backbone.predict(self.x, verbose=0))
        keras.backend.clear_session()
        return self[spec]


@pytest.fixture(scope="module")
def apps_weights(tmp_path_factory) -> AppsWeights:
    return AppsWeights(tmp_path_factory.mktemp("apps"))


@pytest.mark.parametrize(
    "spec",
    [  # the 101/152-layer models repeat the 50-layer ones' blocks; CI runs them with -m slow
        pytest.param(spec, marks=pytest.mark.slow) if "101" in spec or "152" in spec else spec
        for spec in sorted(KERAS_APPS)
    ],
)
def test_keras_applications_weights_give_the_same_outputs(
    spec: str, apps_weights: dict, tmp_path: Path
) -> None:
    path, x, expected, _ = apps_weights[spec]
    result = build_spec(
        Path(f"specs/keras/{spec}.yaml"), tmp_path, input_size=SIZE, weights=str(path), save=False
    )
    assert_close_to_scale(result.model.predict(x, verbose=0), expected)


@pytest.mark.parametrize("spec", ["resnet50", "resnet50v2"])
def test_backbone_without_top_loads_the_same_weights(spec: str, apps_weights: dict, tmp_path: Path) -> None:
    path, x, _, expected = apps_weights[spec]
    result = build_spec(
        Path(f"specs/keras/{spec}.yaml"),
        tmp_path,
        input_size=SIZE,
        weights=str(path),
        include_top=False,
        save=False,
    )
    assert "predictions" not in [layer.name for layer in result.model.layers]
    assert_close_to_scale(result.model.predict(x, verbose=0), expected)


def test_single_channel_stem_sums_the_rgb_kernel(apps_weights: dict, tmp_path: Path) -> None:
    path, _, _, _ = apps_weights["resnet50"]
    rgb = build_spec(
        Path("specs/keras/resnet50.yaml"), tmp_path, input_size=SIZE, weights=str(path), save=False
    )
    gray = build_spec(
        Path("specs/keras/resnet50.yaml"),
        tmp_path,
        input_size=SIZE,
        in_channels=1,
        weights=str(path),
        save=False,
    )
    image = np.random.default_rng(2).uniform(0, 1, (1, SIZE, SIZE, 1)).astype("float32")
    same = rgb.model.predict(np.repeat(image, 3, axis=3), verbose=0)
    assert np.max(np.abs(gray.model.predict(image, verbose=0) - same)) < 1e-4


def test_mismatched_weights_list_the_layers(apps_weights: dict, tmp_path: Path) -> None:
    path, _, _, _ = apps_weights["resnet50v2"]
    with pytest.raises(RescompileError, match=r"layers do not match: .*conv2_block1_1_conv"):
        build_spec(Path("specs/keras/resnet50.yaml"), tmp_path / "out", input_size=SIZE, weights=str(path))
    assert not list((tmp_path / "out").glob("*.keras"))


def test_corrupt_and_missing_weights_are_clear_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(RescompileError, match="cannot read weights"):
        build_spec(Path("specs/keras/resnet50.yaml"), tmp_path / "out", input_size=SIZE, weights=str(corrupt))
    with pytest.raises(RescompileError, match="file not found"):
        build_spec(Path("specs/keras/resnet50.yaml"), tmp_path / "out", weights=str(tmp_path / "nope.h5"))
    assert not list((tmp_path / "out").glob("*.keras"))


def test_feature_outputs_have_the_ir_shapes() -> None:
    analysis, model = generated_model("specs/resnet50.yaml", outputs=["C3", "C4", "C5"])
    shapes = [tuple(t.shape) for t in model.outputs]
    assert shapes == [(None, *plan.output) for plan in analysis.graph.stages[1:]]


def test_freezing_keeps_frozen_batchnorm_statistics(tmp_path: Path) -> None:
    analysis, model = generated_model("specs/cifar/resnet20.yaml")
    frozen = set(freeze(model, analysis.graph, 1))
    assert "conv2_block3_2_bn" in frozen and "conv3_block1_1_bn" not in frozen
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 32, 32, 3)), rng.integers(0, 10, 16), epochs=1, verbose=0)
    for name in ("conv1_bn", "conv2_block1_1_bn", "conv2_block1_1_conv"):
        after = model.get_layer(name).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after, strict=True)), name
    changed = model.get_layer("conv3_block1_1_bn").get_weights()
    assert not np.array_equal(before["conv3_block1_1_bn"][2], changed[2])  # moving mean updated


def test_build_writes_the_generated_source_and_a_model_that_loads_without_rescompile(tmp_path: Path) -> None:
    result = build_spec(Path("specs/cifar/resnet20.yaml"), tmp_path)
    assert result.source_path.read_text() == Path("generated/cifar_resnet20.py").read_text()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", result.model.predict(x, verbose=0))
    code = (
        "import sys; sys.modules['rescompile'] = None\n"
        "import numpy as np, keras\n"
        f"m = keras.saving.load_model('{result.model_path}')\n"
        f"d = np.abs(m.predict(np.load('{tmp_path}/x.npy'), verbose=0) - np.load('{tmp_path}/y.npy')).max()\n"
        "assert d < 1e-6, d\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_build_errors_exit_2_without_partial_files(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rescompile", "build", *args], capture_output=True, text=True
        )

    small = run("specs/keras/resnet50.yaml", "--out", str(tmp_path / "a"), "--input-size", "16")
    assert small.returncode == 2
    assert (
        small.stderr.strip() == "error: input size 16 is too small for keras_resnet50: it downsamples by 32"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = run("specs/cifar/resnet20.yaml", "--out", str(blocker / "sub"))
    assert unwritable.returncode == 2 and unwritable.stderr.startswith("error: --out")
    assert "Traceback" not in small.stderr + unwritable.stderr
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())
