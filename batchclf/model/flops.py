"""FLOPs per image, counted from the layer shapes of a built Keras model.

One multiply-add is two FLOPs, the usual convention (the classic seed model
comes to about 32 MFLOP).  Convolutions and dense layers dominate; batch
norm, activations and pooling add well under 1% and are counted as one FLOP
per output value so the figure is a slight over-estimate, never an under.
"""

from __future__ import annotations

import math


def _out_values(layer) -> int:
    return math.prod(d for d in layer.output.shape[1:] if d is not None)


def flops_per_image(model) -> int:
    total = 0
    for layer in model.layers:
        kind = layer.__class__.__name__
        if kind == "Conv2D":
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * _out_values(layer) * kernel_h * kernel_w * channels_in
        elif kind == "DepthwiseConv2D":
            kernel_h, kernel_w = layer.kernel.shape[:2]
            total += 2 * _out_values(layer) * kernel_h * kernel_w
        elif kind == "Dense":
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif kind in {"BatchNormalization", "ReLU", "MaxPooling2D", "Activation"}:
            total += _out_values(layer)
    return int(total)
