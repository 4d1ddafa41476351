"""The generated module offers what keras.applications users reach for: preprocess_input() and
its constants, and build(weights=, input_tensor=, pooling=, classifier_activation=)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rescompile.spec import load_spec

keras = pytest.importorskip("keras")

from rescompile.keras_backend.model import load_module  # noqa: E402


def _module(name: str):
    return load_module(Path("generated") / f"{name}.py")


def test_headers_name_the_spec_by_its_library_name() -> None:
    for name, label in (
        ("resnet50", "resnet50"),
        ("cifar_resnet20", "cifar/resnet20"),
        ("keras_resnet50", "keras/resnet50"),
    ):
        head = Path(f"generated/{name}.py").read_text().split('"""')[1]
        assert f"from the spec {label} (`rescompile build {label}` writes" in head.replace("\n", " ")
        assert "specs/" not in head and "rescompile generate" not in head


@pytest.mark.parametrize(
    ("name", "spec"),
    [("keras_resnet50", "keras/resnet50.yaml"), ("cifar_resnet20", "cifar/resnet20.yaml"),
     ("cifar_wrn16_8", "cifar/wrn16_8.yaml")],
)  # fmt: skip
def test_preprocess_input_is_the_specs_preprocessing(name: str, spec: str) -> None:
    module = _module(name)
    preprocessing = load_spec(Path("specs") / spec).preprocess
    config = preprocessing.model_dump(mode="json")
    constants = (module.COLOR, module.SCALE, module.MEAN, module.STD, module.CROP)
    assert constants == tuple(config[key] for key in ("color", "scale", "mean", "std", "crop"))
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(module.preprocess_input(images.astype(np.uint8)))
    assert np.allclose(got, preprocessing.normalize(images), rtol=1e-6, atol=1e-5)


def test_build_takes_keras_applications_arguments(tmp_path: Path) -> None:
    module = _module("cifar_resnet20")
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    full = module.build()
    weights = tmp_path / "r20.weights.h5"
    full.save_weights(weights)
    loaded = module.build(weights=str(weights))
    assert np.allclose(loaded.predict(x, verbose=0), full.predict(x, verbose=0), atol=1e-6)

    logits = module.build(weights=str(weights), classifier_activation=None)
    assert np.allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits.predict(x, verbose=0))),
        full.predict(x, verbose=0),
        atol=1e-5,
    )

    backbone = module.build(include_top=False)
    features = backbone.predict(x, verbose=0)
    assert features.shape == (2, 8, 8, 64)
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = module.build(include_top=False, pooling=pooling)
        pooled.set_weights(backbone.get_weights())
        assert np.allclose(pooled.predict(x, verbose=0), reduce(features, axis=(1, 2)), atol=1e-5)

    image = keras.Input((32, 32, 3), name="image")
    on_tensor = module.build(input_tensor=image)
    assert on_tensor.inputs[0] is image and on_tensor.output.shape == (None, 10)
    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max'"):
        module.build(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="weights='imagenet': pass the path"):
        module.build(weights="imagenet")
