"""`load_weights`: every layer must find its weights (a new head excepted), finite ones only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rescompile.errors import RescompileError
from rescompile.keras_backend.build import build_spec
from rescompile.keras_backend.model import load_weights
from tests.keras_helpers import randomize_batchnorm

keras = pytest.importorskip("keras")
SPEC = Path("specs/cifar/resnet20.yaml")

PARTIAL_HINT = " (--allow-partial loads the rest)"


def _write_h5(path: Path, weights: dict[str, list[np.ndarray]]) -> Path:
    """Weights in keras.applications' legacy HDF5 layout: root attribute `layer_names`, a group
    per layer with attribute `weight_names` and one dataset per weight."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name in weights]
        for name, arrays in weights.items():
            group = handle.create_group(name)
            names = [f"{name}_{index}" for index in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, array in zip(names, arrays, strict=True):
                group.create_dataset(weight_name, data=array)
    return path


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _fresh(tmp_path: Path, seed: int = 1):
    """A newly built resnet20 with its own random initialisation, and its IR graph."""
    keras.utils.set_random_seed(seed)
    result = build_spec(SPEC, tmp_path, save=False)
    return result.model, result.analysis.graph


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[dict[str, list[np.ndarray]], np.ndarray, np.ndarray]:
    """A resnet20 with non-trivial weights: its weight arrays, an input batch and its output."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("source")
    model = build_spec(SPEC, folder, save=False).model
    randomize_batchnorm(model)
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype("float32")
    return _weights(model), x, model.predict(x, verbose=0)


def _unchanged(model, before: dict[str, list[np.ndarray]]) -> bool:
    return all(
        all(np.array_equal(a, b) for a, b in zip(before[name], arrays, strict=True))
        for name, arrays in _weights(model).items()
    )


def test_full_file_loads_every_layer_and_gives_the_same_outputs(source, tmp_path: Path, capsys) -> None:
    weights, x, expected = source
    path = _write_h5(tmp_path / "full.h5", weights)
    model, graph = _fresh(tmp_path)
    assert load_weights(model, path, graph=graph) == len(weights) == 39
    assert np.abs(model.predict(x, verbose=0) - expected).max() < 1e-6
    assert capsys.readouterr().err == ""


def test_a_layer_missing_from_the_file_is_an_error_naming_it(source, tmp_path: Path) -> None:
    weights, _, _ = source
    partial = {name: arrays for name, arrays in weights.items() if name != "conv3_block2_1_conv"}
    path = _write_h5(tmp_path / "partial.h5", partial)
    model, graph = _fresh(tmp_path)
    before = _weights(model)
    with pytest.raises(RescompileError) as error:
        load_weights(model, path, graph=graph)
    assert (
        str(error.value)
        == f"{path}: 1 layer of the model has no weights in the file: conv3_block2_1_conv" + PARTIAL_HINT
    )
    assert _unchanged(model, before)
    with pytest.raises(RescompileError, match="conv3_block2_1_conv"):
        load_weights(model, path)  # without the graph too


def test_allow_partial_loads_the_rest_with_a_warning(source, tmp_path: Path, capsys) -> None:
    weights, _, _ = source
    partial = {name: arrays for name, arrays in weights.items() if name != "conv3_block2_1_conv"}
    path = _write_h5(tmp_path / "partial.h5", partial)
    model, graph = _fresh(tmp_path)
    before = model.get_layer("conv3_block2_1_conv").get_weights()[0]
    assert load_weights(model, path, graph=graph, allow_partial=True) == 38
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "conv3_block2_1_conv" in warning[0]
    assert np.array_equal(model.get_layer("conv3_block2_1_conv").get_weights()[0], before)
    assert np.array_equal(model.get_layer("conv1_conv").get_weights()[0], weights["conv1_conv"][0])


def test_a_long_list_of_missing_layers_is_capped(source, tmp_path: Path) -> None:
    weights, _, _ = source
    dropped = list(weights)[2:17]
    path = _write_h5(tmp_path / "short.h5", {k: v for k, v in weights.items() if k not in dropped})
    model, _ = _fresh(tmp_path)
    with pytest.raises(RescompileError) as error:
        load_weights(model, path)
    message = str(error.value)
    assert "15 layers of the model have no weights in the file: " in message
    assert (
        message.endswith(f"{dropped[9]} and 5 more (--allow-partial loads the rest)")
        and dropped[10] not in message
    )


def test_a_missing_head_is_a_new_head_when_the_graph_says_so(source, tmp_path: Path, capsys) -> None:
    """A *_notop.h5 backbone file under a classifier of the model's own: transfer learning."""
    weights, _, _ = source
    notop = {name: arrays for name, arrays in weights.items() if name != "predictions"}
    path = _write_h5(tmp_path / "notop.h5", notop)
    model, graph = _fresh(tmp_path)
    assert load_weights(model, path, graph=graph) == 38
    assert capsys.readouterr().err.strip() == f"{path}: new head, randomly initialised: predictions"
    assert np.array_equal(
        model.get_layer("conv4_block3_2_conv").get_weights()[0], weights["conv4_block3_2_conv"][0]
    )
    with pytest.raises(RescompileError, match="no weights in the file: predictions"):
        load_weights(model, path)  # without the graph, the head is a missing layer like any other


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_and_nothing_is_loaded(bad: float, source, tmp_path: Path) -> None:
    weights, _, _ = source
    poisoned = {name: [a.copy() for a in arrays] for name, arrays in weights.items()}
    poisoned["conv3_block1_2_bn"][3][5] = bad  # a moving variance
    path = _write_h5(tmp_path / "poisoned.h5", poisoned)
    model, graph = _fresh(tmp_path)
    before = _weights(model)
    with pytest.raises(RescompileError) as error:
        load_weights(model, path, graph=graph, allow_partial=True)
    assert str(error.value).startswith(f"{path}: layer conv3_block1_2_bn has non-finite weights")
    assert _unchanged(model, before)


def test_cli_build_with_a_partial_file_exits_2_with_one_line(source, tmp_path: Path) -> None:
    weights, _, _ = source
    partial = {name: arrays for name, arrays in weights.items() if name != "conv2_block1_2_bn"}
    path = _write_h5(tmp_path / "partial.h5", partial)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "rescompile", "build", str(SPEC), "--out", str(out), "--weights", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {path}: 1 layer of the model has no weights in the file: conv2_block1_2_bn" + PARTIAL_HINT
    )
    assert not (out / "cifar_resnet20.keras").exists() and not (out / "cifar_resnet20.py").exists()
