"""Training-time augmentation for scanned digits, as batched TensorFlow ops.

Real scans reach the model after :func:`batchclf.scan.preprocess.normalize`, which
undoes size, position and polarity; what is left is what this module
imitates: small rotations and shears, sub-20px shifts and scale errors,
thicker or thinner strokes, and soft (blurred) edges.  Random numbers are
stateless and derived from ``(seed, batch index)`` so a run is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation_deg: float = 12.0
    max_shear: float = 0.15
    scale_range: tuple[float, float] = (0.88, 1.12)
    max_shift_px: float = 2.5
    thicken_prob: float = 0.15
    thin_prob: float = 0.15
    blur_prob: float = 0.15


def augment_batch(images, batch_index, seed: int, config: AugmentConfig = AugmentConfig()):
    """Augment a ``(B, 28, 28, 1)`` float32 batch; ``batch_index`` makes each batch differ."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), tf.cast(batch_index, tf.int64)]), num=8
    )

    def uniform(i, low, high):
        return tf.random.stateless_uniform([batch], seed=seeds[i], minval=low, maxval=high)

    angle = uniform(0, -1.0, 1.0) * (config.max_rotation_deg * math.pi / 180.0)
    shear = uniform(1, -config.max_shear, config.max_shear)
    scale_x = uniform(2, *config.scale_range)
    scale_y = scale_x * uniform(3, 0.95, 1.05)
    shift = tf.random.stateless_uniform(
        [batch, 2], seed=seeds[4], minval=-config.max_shift_px, maxval=config.max_shift_px
    )

    # Output pixel -> input pixel mapping (what ImageProjectiveTransform wants):
    # input = A^-1 (out - centre) + centre - shift, with A = rotation * shear * scale.
    cos, sin = tf.cos(angle), tf.sin(angle)
    a00, a01 = cos / scale_x, (sin + shear * cos) / scale_x
    a10, a11 = -sin / scale_y, (cos - shear * sin) / scale_y
    centre = 13.5
    b0 = centre - a00 * centre - a01 * centre - shift[:, 0]
    b1 = centre - a10 * centre - a11 * centre - shift[:, 1]
    zeros = tf.zeros_like(a00)
    transforms = tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([28, 28], tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )

    choice = uniform(5, 0.0, 1.0)[:, None, None, None]
    thick = tf.nn.max_pool2d(images, 2, 1, "SAME")
    thin = -tf.nn.max_pool2d(-images, 2, 1, "SAME")
    images = tf.where(choice < config.thicken_prob, thick, images)
    images = tf.where(
        (choice >= config.thicken_prob) & (choice < config.thicken_prob + config.thin_prob), thin, images
    )

    kernel_1d = tf.constant([0.25, 0.5, 0.25], tf.float32)
    kernel = tf.reshape(kernel_1d[:, None] * kernel_1d[None, :], [3, 3, 1, 1])
    blurred = tf.nn.conv2d(images, kernel, 1, "SAME")
    images = tf.where(uniform(6, 0.0, 1.0)[:, None, None, None] < config.blur_prob, blurred, images)
    return tf.clip_by_value(images, 0.0, 1.0)
