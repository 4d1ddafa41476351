"""Gradient flow: the gradient norm of every weighted layer on one batch, against depth."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescompile import ir
from rescompile.analysis.analyze import Analysis, analyze_network, overridden
from rescompile.fileio import write_text_atomic
from rescompile.ir.network import compile_network
from rescompile.options import GRADIENTS_BATCH
from rescompile.spec import Spec


@dataclass
class GradientProfile:
    """Per weighted layer on the main path, input to output: the norm of the gradient of the loss
    with respect to the layer's kernel, and with respect to its output (the backpropagated signal).
    """

    label: str
    """The network built, named after the spec and the options overridden (as in gradients.json)."""
    layers: list[str]
    kernel_norms: list[float]
    signal_norms: list[float]
    network: str
    """The spec's name."""
    setting: str
    """What differs from the spec as written, in words (e.g. "BatchNorm off, glorot_uniform init")."""
    inputs: str
    """The batch the gradients were taken on, in words."""

    @property
    def legend(self) -> str:
        """The legend label: the spec's name and what was changed."""
        return f"{self.network} ({self.setting})"

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
    analysis: Analysis, *, network: str, setting: str, batch: int = GRADIENTS_BATCH, seed: int = 0
) -> GradientProfile:
    """Build the compiled network (of the spec called `network`, `setting` saying what was
    overridden) and take gradients on one batch."""
    import keras
    import tensorflow as tf

    from rescompile.keras_backend.build import build

    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        model = build(analysis, Path(scratch), save=False).model
    graph = analysis.graph
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
        label=analysis.spec.name,
        layers=weighted,
        kernel_norms=[float(tf.norm(g).numpy()) for g in kernel_gradients],
        signal_norms=[float(tf.norm(g).numpy()) for g in signal_gradients],
        network=network,
        setting=setting,
        inputs=f"one batch of {batch} random N(0, 1) images of {'×'.join(map(str, graph.input.shape))}"
        f" with random labels (seed {seed})",
    )


def profile_spec(spec: Spec, options: dict | None = None, *, batch: int = GRADIENTS_BATCH) -> GradientProfile:
    """The gradient profile of `spec` with `options` overridden (e.g. batchnorm off), compiled once."""
    analysis = analyze_network(compile_network(overridden(spec, options)), compared=not options)
    return gradient_profile(analysis, network=spec.name, setting=in_words(options), batch=batch)


def in_words(options: dict | None) -> str:
    """Spec options overridden, as a reader says them: "BatchNorm off, glorot_uniform init"."""
    if not options:
        return "as written"
    words = []
    for key, value in sorted(options.items()):
        if key == "batchnorm":
            words.append(f"BatchNorm {'on' if value else 'off'}")
        elif key == "initializer":
            words.append(f"{value} init")
        else:
            words.append(f"{key} {value}")
    return ", ".join(words)


def profiles_figure(profiles: list[GradientProfile]):
    """Both norms against depth, log scale, one curve per network; titled with the networks and
    the batch, one legend below."""
    from rescompile.figures import PanelCurve, two_panels

    networks = ", ".join(dict.fromkeys(p.network for p in profiles))
    inputs = "; ".join(dict.fromkeys(p.inputs for p in profiles))
    curves = [
        PanelCurve(p.legend, list(range(1, len(p.layers) + 1)), p.signal_norms, p.kernel_norms)
        for p in profiles
    ]
    title = f"Gradient norm per weighted layer at initialisation: {networks}\n{inputs}"
    figure, (signal_axis, kernel_axis) = two_panels(title, curves)
    signal_axis.set(title="backpropagated signal", ylabel="‖∂loss/∂layer output‖ (log scale)")
    kernel_axis.set(title="kernel gradient", ylabel="‖∂loss/∂kernel‖ (log scale)")
    for axis in (signal_axis, kernel_axis):
        axis.set(xlabel="weighted layer (depth, input to output)", yscale="log")
    return figure


def plot_profiles(profiles: list[GradientProfile], path: Path) -> None:
    """Write profiles_figure(profiles) to `path`."""
    from rescompile.figures import write_figure

    write_figure(profiles_figure(profiles), path)


def run(
    specs: list[Spec],
    no_batchnorm: list[Spec],
    out: Path,
    *,
    initializer: str | None = None,
    batch: int = GRADIENTS_BATCH,
) -> list[GradientProfile]:
    """Profiles of `specs` as written and of `no_batchnorm` with BN off (and `initializer`, if
    given, for those), each on one batch of `batch` images; writes gradients.png and gradients.json."""
    from rescompile.progress import Steps

    options = {"batchnorm": False, **({"initializer": initializer} if initializer else {})}
    networks = [(spec, None) for spec in specs] + [(spec, options) for spec in no_batchnorm]
    profiles = []
    with Steps("gradients experiment", len(networks)) as steps:
        for spec, changed in networks:
            steps.advance(f"{spec.name} ({in_words(changed)})")
            profiles.append(profile_spec(spec, changed, batch=batch))
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
