"""Published numbers, written down from the papers (He et al. 2015 and 2016, Zagoruyko & Komodakis
2016, Xie et al. 2017) and torchvision's and timm's model documentation, independently of the specs'
`expect:` sections."""

# ImageNet: paper Table 1 "FLOPs" (multiply-adds), exact MACs with the stride on the 1x1 and on
# the 3x3 (v1.5), torchvision's exact parameter counts.
IMAGENET = {
    "resnet18": (1.8e9, 1.814e9, 1.814e9, 11_689_512),
    "resnet34": (3.6e9, 3.664e9, 3.664e9, 21_797_672),
    "resnet50": (3.8e9, 3.858e9, 4.089e9, 25_557_032),
    "resnet101": (7.6e9, 7.570e9, 7.801e9, 44_549_160),
    "resnet152": (11.3e9, 11.282e9, 11.514e9, 60_192_808),
}

# CIFAR-10 v1, option A: depth -> (n, paper params, significant figures, exact params, MACs).
CIFAR = {
    20: (3, 0.27e6, 2, 269_722, 40.6e6),
    32: (5, 0.46e6, 2, 464_154, 68.9e6),
    44: (7, 0.66e6, 2, 658_586, 97.2e6),
    56: (9, 0.85e6, 2, 853_018, 125.5e6),
    110: (18, 1.7e6, 2, 1_727_962, 252.9e6),
    1202: (200, 19.4e6, 3, 19_421_274, 2.83e9),
}

# Pre-activation: spec -> (depth, paper params, significant figures).
PREACT = {
    "preact_resnet110": (110, 1.7e6, 2),
    "preact_resnet164": (164, 1.7e6, 2),
    "preact_resnet1001": (1001, 10.2e6, 3),
}
PREACT_164_ANALYTIC = 1_703_258
PREACT_1001_ANALYTIC = 10.33e6

# The Keras CIFAR example's v1 models, Keras count_params() (BN moving statistics included).
KERAS_EXAMPLE_V1 = {20: 274_442, 56: 861_770}

# keras.applications ResNet50 = torchvision's count + conv biases + BN moving statistics.
KERAS_RESNET50_PARTS = (25_557_032, 26_560, 53_120, 25_636_712)

# Our keras.applications-faithful specs and the keras.applications builders they mirror.
KERAS_APPS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
}

# The family beyond the two papers, torchvision's model documentation: trainable parameters (exact)
# and GFLOPS, which torchvision counts as multiply-adds at 224 px (2 decimals).
TORCHVISION_FAMILY = {
    "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.41),
    "resnext101_64x4d": (83_455_272, 15.46),
    "wide_resnet50_2": (68_883_240, 11.40),
    "wide_resnet101_2": (126_886_696, 22.75),
}

# timm's trainable parameter counts (exact).
TIMM_PARAMS = {"resnet50d": 25_576_264, "seresnet50": 28_088_024}

# CIFAR Wide ResNets, Zagoruyko & Komodakis 2016 Table 4: spec -> (params, significant figures).
WRN = {"wrn28_10": (36.5e6, 3), "wrn16_8": (11.0e6, 3), "wrn40_4": (8.9e6, 2)}

# CIFAR ResNeXt-29, Xie et al. 2017 Table 7, convolution and fc weights (the paper leaves BN out):
# spec -> (params, significant figures).
RESNEXT29 = {"resnext29_8x64d": (34.4e6, 3), "resnext29_16x64d": (68.1e6, 3)}
