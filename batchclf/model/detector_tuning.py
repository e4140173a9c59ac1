"""Fine-tuning the not-a-digit detector so that real handwriting counts as digits.

The shipped detector learned "digit" from MNIST and USPS alone, so a real
writer's habits (the continental one's long up-stroke, a crossed seven) look
to it like scribbles.  Fine-tuning starts from its weights and shows it the
real scans on the digit side, beside MNIST digits (as files and rendered as
scans) and the drawn non-digits, with the classifier's scan augmentation on
both sides, so it learns the writers without forgetting the non-digits.
"""

from __future__ import annotations

import numpy as np

from batchclf.datasets import nondigits
from batchclf.model.detector import BATCH, CONTINENTAL_ONES, _both_routes, _negatives, _scanned
from batchclf.model.predictor import load_keras_model

EPOCHS = 2
LEARNING_RATE = 3e-4
REAL_SHARE = 0.25  # of the digit side: the real scans, repeated up to this share


def training_sides(mnist_x: np.ndarray, mnist_y: np.ndarray, n_negative: int, n_scanned: int, seed: int,
                   processes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(digits, non_digits)`` drawn once: MNIST digits (a share rendered as scans) and drawn non-digits.

    Slow (the scan rendering), so a caller that fine-tunes several times draws these once.
    """
    from batchclf.model.styles import continental_ones

    rng = np.random.default_rng(seed)
    training_fonts, _ = nondigits.font_split(nondigits.installed_fonts())
    drawn = _negatives(n_negative, nondigits.Source(training_fonts, mnist_x), nondigits.TRAINING_KINDS, seed)
    negatives = np.stack(_both_routes(drawn, seed, processes))
    raw = mnist_x.astype(np.float32)[..., None] / 255.0
    with_ones = (continental_ones(raw, mnist_y, CONTINENTAL_ONES, rng)[..., 0] * 255).round().astype(np.uint8)
    chosen = rng.choice(len(mnist_x), min(n_scanned, len(mnist_x)), replace=False)
    scanned = np.stack(_scanned([with_ones[i] for i in chosen], seed + 1, processes))
    return np.concatenate([with_ones, scanned]), negatives


def fine_tune_detector(base, digits: np.ndarray, real: np.ndarray, non_digits: np.ndarray, seed: int = 0,
                       epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE, real_share: float = REAL_SHARE):
    """The detector at ``base`` fine-tuned with ``real`` scans (MNIST form) among the digits; returns the Keras model."""
    import keras

    from batchclf.model.training import mix_in, training_stream
    from batchclf.scan.preprocess import mnist_to_input

    keras.utils.set_random_seed(seed)
    model = load_keras_model(base)
    positives, _, _ = mix_in(digits, np.zeros(len(digits)), real, np.zeros(len(real)), real_share)
    x = np.concatenate([positives, non_digits])
    y = np.concatenate([np.zeros(len(positives)), np.ones(len(non_digits))]).astype(np.float32)
    # Balance the sides by repeating the smaller one rather than weighting (the stream has no class weights).
    if len(non_digits) < len(positives):
        extra = np.random.default_rng(seed).choice(len(non_digits), len(positives) - len(non_digits))
        x, y = np.concatenate([x, non_digits[extra]]), np.concatenate([y, np.ones(len(extra), np.float32)])
    steps = max(1, len(x) // BATCH)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    model.fit(training_stream(mnist_to_input(x), y, BATCH, seed, augment=True), epochs=epochs, steps_per_epoch=steps,
              shuffle=False, verbose=0)
    return model


def scores(model, images: np.ndarray) -> np.ndarray:
    """The detector's not-a-digit probability for MNIST-form images."""
    from batchclf.scan.preprocess import mnist_to_input

    return model.predict(mnist_to_input(images), batch_size=512, verbose=0)[:, 0]
