"""Gradient flow: the gradient norm of every weighted layer on one batch, against depth."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile import ir
from rescompile.fileio import write_text_atomic


@dataclass
class GradientProfile:
    """Per weighted layer on the main path, input to output: the norm of the gradient of the loss
    with respect to the layer's kernel, and with respect to its output (the backpropagated signal).
    """

    label: str
    layers: list[str]
    kernel_norms: list[float]
    signal_norms: list[float]

    @property
    def signal_first_to_last(self) -> float:
        """Backpropagated signal at the first weighted layer over that at the last conv."""
        return self.signal_norms[0] / self.signal_norms[-2]


@contextlib.contextmanager
def _captured_outputs(model, names: list[str], tape, outputs: dict):
    """While active, the named layers record (and the tape watches) the tensors they output."""
    layers = [model.get_layer(name) for name in names]
    for layer in layers:

        def call(*args, _layer=layer, _call=layer.call, **kwargs):
            out = _call(*args, **kwargs)
            tape.watch(out)
            outputs[_layer.name] = out
            return out

        layer.call = call
    try:
        yield
    finally:
        for layer in layers:
            del layer.call


def gradient_profile(
    spec: Path, options: dict | None = None, batch: int = 32, seed: int = 0
) -> GradientProfile:
    """Build the spec (options overridden, e.g. batchnorm off), take gradients on one batch."""
    import keras
    import tensorflow as tf

    from rescompile.keras_backend.build import build

    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        result = build(spec, Path(scratch), save=False, options=options)
    model, graph = result.model, result.analysis.graph
    weighted = [n.name for n in graph.nodes if isinstance(n, (ir.Conv, ir.Dense)) and n.main_path]
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, *graph.input.shape)).astype("float32")
    y = keras.ops.one_hot(rng.integers(0, model.output.shape[-1], batch), model.output.shape[-1])
    kernels = [model.get_layer(name).kernel.value for name in weighted]
    outputs: dict[str, tf.Tensor] = {}
    with tf.GradientTape() as tape:
        with _captured_outputs(model, weighted, tape, outputs):
            probabilities = model(x, training=True)
        # Written out, so that the gradient flows through the softmax output that was captured.
        loss = -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(probabilities + 1e-12), axis=-1))
    kernel_gradients, signal_gradients = tape.gradient(loss, [kernels, [outputs[n] for n in weighted]])
    return GradientProfile(
        result.analysis.spec.name,
        weighted,
        [float(tf.norm(g).numpy()) for g in kernel_gradients],
        [float(tf.norm(g).numpy()) for g in signal_gradients],
    )


def plot_profiles(profiles: list[GradientProfile], path: Path) -> None:
    """Both norms against depth, log scale, one curve per network."""
    from rescompile.train.plots import pyplot, save_png

    plt = pyplot()

    figure, (signal_axis, kernel_axis) = plt.subplots(1, 2, figsize=(12, 4))
    for profile in profiles:
        depth = range(1, len(profile.layers) + 1)
        signal_axis.plot(depth, profile.signal_norms, label=profile.label, marker=".")
        kernel_axis.plot(depth, profile.kernel_norms, label=profile.label, marker=".")
    signal_axis.set(xlabel="weighted layer (depth)", ylabel="‖∂loss/∂layer output‖", yscale="log")
    kernel_axis.set(xlabel="weighted layer (depth)", ylabel="‖∂loss/∂kernel‖", yscale="log")
    for axis in (signal_axis, kernel_axis):
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    save_png(figure, path)
    plt.close(figure)


def run(
    specs: list[Path], no_batchnorm: list[Path], out: Path, initializer: str | None = None
) -> list[GradientProfile]:
    """Profiles of `specs` as written and of `no_batchnorm` with BN off (and `initializer`, if
    given, for those); writes gradients.png and gradients.json."""
    profiles = [gradient_profile(spec) for spec in specs]
    options = {"batchnorm": False, **({"initializer": initializer} if initializer else {})}
    profiles += [gradient_profile(spec, options) for spec in no_batchnorm]
    out.mkdir(parents=True, exist_ok=True)
    plot_profiles(profiles, out / "gradients.png")
    payload = [
        {
            "network": p.label,
            "layers": p.layers,
            "kernel_norms": p.kernel_norms,
            "signal_norms": p.signal_norms,
        }
        for p in profiles
    ]
    write_text_atomic(out / "gradients.json", json.dumps(payload, indent=2))
    return profiles
