"""The compiled networks reproduce the published parameter and multiply-add counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescompile.analysis.analyze import analyze
from rescompile.spec.library import find_specs
from tests import reference


def _round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


@pytest.mark.parametrize("name", sorted(reference.IMAGENET))
def test_imagenet_params_equal_torchvision_exactly(name: str) -> None:
    assert analyze(f"specs/{name}.yaml").cost.params == reference.IMAGENET[name][3]


@pytest.mark.parametrize("name", sorted(reference.IMAGENET))
def test_imagenet_macs_match_paper_table1_within_2_percent(name: str) -> None:
    paper, stride_1x1, _, _ = reference.IMAGENET[name]
    macs = analyze(f"specs/{name}.yaml").cost.macs
    assert abs(macs - paper) <= 0.02 * paper
    assert round(macs / 1e9, 3) == round(stride_1x1 / 1e9, 3)


def test_resnet50_v1_5_moves_macs_not_params() -> None:
    v1, v15 = analyze("specs/resnet50.yaml"), analyze("specs/resnet50_v1.5.yaml")
    assert v15.cost.params == v1.cost.params
    assert round(v15.cost.macs / 1e9, 3) == round(reference.IMAGENET["resnet50"][2] / 1e9, 3)


@pytest.mark.parametrize("depth", sorted(reference.CIFAR))
def test_cifar_v1_params_depth_and_macs(depth: int) -> None:
    n, paper, digits, exact, macs = reference.CIFAR[depth]
    analysis = analyze(f"specs/cifar/resnet{depth}.yaml")
    assert analysis.cost.depth == 6 * n + 2 == depth
    assert _round_sig(analysis.cost.params, digits) == paper
    assert analysis.cost.params == exact
    assert abs(analysis.cost.macs - macs) <= 0.005 * macs


@pytest.mark.parametrize("name", sorted(reference.PREACT))
def test_preact_params_and_depth(name: str) -> None:
    depth, paper, digits = reference.PREACT[name]
    analysis = analyze(f"specs/cifar/{name}.yaml")
    assert analysis.cost.depth == depth
    # The paper's ResNet-1001 figure (10.2M) counts conv and fc weights; 164 and 110 agree either way.
    assert _round_sig(analysis.cost.params_conv_fc, digits) == paper
    if depth != 1001:
        assert _round_sig(analysis.cost.params, digits) == paper


def test_preact_164_matches_the_analytic_count() -> None:
    assert analyze("specs/cifar/preact_resnet164.yaml").cost.params == reference.PREACT_164_ANALYTIC


@pytest.mark.parametrize("depth", sorted(reference.KERAS_EXAMPLE_V1))
def test_keras_example_v1_counts_like_keras(depth: int) -> None:
    analysis = analyze(f"specs/cifar/keras_example/resnet{depth}.yaml")
    assert analysis.cost.params_total == reference.KERAS_EXAMPLE_V1[depth]


def test_keras_resnet50_parameter_columns_add_up() -> None:
    cost = analyze("specs/keras/resnet50.yaml").cost
    torchvision, biases, bn_stats, keras_total = reference.KERAS_RESNET50_PARTS
    assert (cost.weights + cost.bn_params, cost.conv_bias, cost.bn_stats, cost.params_total) == (
        torchvision,
        biases,
        bn_stats,
        keras_total,
    )


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_plain_cifar_nets_are_the_resnets_without_shortcuts(depth: int) -> None:
    plain, resnet = analyze(f"specs/plain/plain{depth}.yaml"), analyze(f"specs/cifar/resnet{depth}.yaml")
    assert plain.cost.params == resnet.cost.params  # option A adds no parameters
    assert plain.cost.macs == resnet.cost.macs
    assert not any(
        node.name.endswith(("_add", "_out")) and len(node.inputs) == 2 for node in plain.graph.nodes
    )


@pytest.mark.parametrize("name", sorted(reference.TORCHVISION_FAMILY))
def test_family_params_and_macs_equal_torchvision(name: str) -> None:
    params, gmacs = reference.TORCHVISION_FAMILY[name]
    cost = analyze(f"specs/{name}.yaml").cost
    assert cost.params == params
    assert round(cost.macs / 1e9, 2) == gmacs


@pytest.mark.parametrize("name", sorted(reference.TIMM_PARAMS))
def test_family_params_equal_timm_exactly(name: str) -> None:
    assert analyze(f"specs/{name}.yaml").cost.params == reference.TIMM_PARAMS[name]


@pytest.mark.parametrize("name", sorted(reference.WRN))
def test_cifar_wide_resnet_params_match_the_paper(name: str) -> None:
    paper, digits = reference.WRN[name]
    assert _round_sig(analyze(f"specs/cifar/{name}.yaml").cost.params, digits) == paper


@pytest.mark.parametrize("name", sorted(reference.RESNEXT29))
def test_cifar_resnext29_conv_and_fc_weights_match_table7(name: str) -> None:
    paper, digits = reference.RESNEXT29[name]
    cost = analyze(f"specs/cifar/{name}.yaml").cost
    # Table 7 leaves BN out: with its 100k BN parameters 16x64d would round to 68.2M.
    assert _round_sig(cost.params_conv_fc, digits) == paper


def test_stochastic_depth_adds_no_parameters_or_macs() -> None:
    dropped, plain = (
        analyze("specs/cifar/resnet110_stochastic_depth.yaml"),
        analyze("specs/cifar/resnet110.yaml"),
    )
    assert dropped.cost.params == plain.cost.params == reference.CIFAR[110][3]
    assert dropped.cost.macs == plain.cost.macs


@pytest.mark.parametrize("path", find_specs([Path("specs")]), ids=str)
def test_every_library_spec_reproduces_its_expectations(path: Path) -> None:
    analysis = analyze(path)
    assert analysis.checks, "every library spec carries published numbers"
    assert analysis.ok, [c for c in analysis.checks if not c.ok]


def test_preact_1001_matches_the_analytic_count() -> None:
    params = analyze("specs/cifar/preact_resnet1001.yaml").cost.params
    assert abs(params - reference.PREACT_1001_ANALYTIC) <= 0.005 * reference.PREACT_1001_ANALYTIC
