"""The not-a-digit detector: a small CNN that says when a 28x28 input is not one digit.

It looks at the same MNIST-form input the classifier gets and gives the
probability that it is a letter, two digits, a scribble, a crossed-out digit
or a smudge.  Rows it flags above its card's ``flag_above`` go to ``review``
with the reason "not a digit".  It is a model of its own, next to the
classifiers (``models/detectors/not-a-digit.keras``), so it works in front of
any classifier, including one the user brings.

Trained by ``python -m batchclf.model.detector --data MNIST [--usps zip.train.gz]``
on real digits (MNIST training digits; USPS *training* digits when given)
against drawn non-digits (:mod:`batchclf.datasets.nondigits`, training fonts
and MNIST training digits only).  The threshold is set on a held-out split of
that same kind of data, never on a set it is measured on.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from batchclf import paths
from batchclf.datasets import nondigits
from batchclf.model import card as cards
from batchclf.model.training import save_atomic

# Share of held-out real digits the threshold may flag; the rest of the budget is left for real scans.
VALIDATION_FLAG_RATE = 0.005
EPOCHS = 8
CONTINENTAL_ONES = 0.4  # the share of ones given the up-stroke, as in the classifier's training (batchclf train)
BATCH = 128


def build():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="not_a_digit",
    )


@dataclass
class Split:
    x: np.ndarray  # (N, 28, 28) uint8, MNIST form
    y: np.ndarray  # 1 = not a digit


def _scan_route(task) -> list[np.ndarray | None]:
    """Worker: canvases -> what prediction sees of them as scan files (seeded per task, so runs repeat)."""
    canvases, seed = task
    rng = np.random.default_rng(seed)
    return [nondigits.as_scan_input(canvas, rng) for canvas in canvases]


def _scanned(canvases: list[np.ndarray], seed: int, processes: int) -> list[np.ndarray]:
    """Each canvas as prediction sees it after a rendered scan; blank results dropped."""
    return [image for image in scanned_or_none(canvases, seed, processes) if image is not None]


def scanned_or_none(canvases: list[np.ndarray], seed: int, processes: int) -> list[np.ndarray | None]:
    """Each canvas as prediction sees it after a rendered scan, None where it came back blank (aligned with the input)."""
    tasks = [(canvases[i : i + 500], seed * 100_003 + i) for i in range(0, len(canvases), 500)]
    with get_context("spawn").Pool(processes) as pool:
        return [image for chunk in pool.map(_scan_route, tasks) for image in chunk]


def _both_routes(canvases: list[np.ndarray], seed: int, processes: int) -> list[np.ndarray]:
    """Half of the canvases as 28x28 files are read (as they are), half through a rendered scan."""
    half = len(canvases) // 2
    direct = [c if c.shape == (28, 28) else nondigits.to_mnist_form(c) for c in canvases[:half]]
    return direct + _scanned(canvases[half:], seed, processes)


def _negatives(n: int, source: nondigits.Source, kinds, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [nondigits.draw(str(kinds[i % len(kinds)]), source, rng) for i in range(n)]


def build_split(digits: np.ndarray, labels: np.ndarray, extra_digits: list[np.ndarray], fonts: list[Path],
                n_negative: int, n_scanned_digits: int, seed: int, processes: int) -> Split:
    """Real digits (as they are, and a share rendered as scans) against ``n_negative`` drawn non-digits."""
    from batchclf.model.styles import continental_ones

    rng = np.random.default_rng(seed)
    drawn = _negatives(n_negative, nondigits.Source(fonts, digits), nondigits.TRAINING_KINDS, seed)
    negatives = _both_routes(drawn, seed, processes)
    # Continental ones are digits too (the classifier learned them, in the same share): as files and as scans,
    # the detector must not flag them.
    raw = digits.astype(np.float32)[..., None] / 255.0
    with_ones = (continental_ones(raw, labels, CONTINENTAL_ONES, rng)[..., 0] * 255).round().astype(np.uint8)
    chosen = rng.choice(len(digits), min(n_scanned_digits, len(digits)), replace=False)
    scanned = _scanned([with_ones[i] for i in chosen], seed + 1, processes)
    positives = [with_ones, np.stack(scanned)] + [np.asarray(extra) for extra in extra_digits if len(extra)]
    x_pos = np.concatenate(positives)
    x_neg = np.stack(negatives)
    x = np.concatenate([x_pos, x_neg])
    y = np.concatenate([np.zeros(len(x_pos), np.float32), np.ones(len(x_neg), np.float32)])
    return Split(x, y)


def threshold_for(scores: np.ndarray, rate: float) -> float:
    """The score above which ``rate`` of these real digits' scores lie."""
    return float(np.quantile(scores, 1.0 - rate))


def train(mnist: Path, out: Path, usps: Path | None = None, seed: int = 0, epochs: int = EPOCHS,
          n_negative: int = 60_000, processes: int = 2, log=print) -> dict:
    """Train, set the threshold on the held-out split, save the detector and its card; returns the card."""
    from batchclf.datasets.labelled import read_labelled
    from batchclf.datasets.mnist import load
    from batchclf.model import device as devices

    started = time.monotonic()
    tf = devices.tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    data = load(mnist)
    training_fonts, _ = nondigits.font_split(nondigits.installed_fonts())
    if not training_fonts:
        raise SystemExit("no fonts found for drawing letters (install fonts-dejavu)")
    # USPS digits through the same normalisation as prediction (and a clear error for a file that is not one).
    extra = [read_labelled([usps]).images] if usps else []
    log(f"drawing {n_negative} non-digits and the scanned digits ...")
    fit = build_split(data.x_train[:50_000], data.y_train[:50_000], extra, training_fonts, n_negative,
                      n_negative // 2, seed, processes)
    held = build_split(data.x_train[50_000:], data.y_train[50_000:], [], training_fonts, 6_000, 5_000, seed + 7,
                       processes)
    log(f"training on {len(fit.y)} images ({int(fit.y.sum())} non-digits), {time.monotonic() - started:.0f} s in")

    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    weight = {0: 1.0, 1: float((fit.y == 0).sum() / max((fit.y == 1).sum(), 1))}
    order = np.random.default_rng(seed).permutation(len(fit.y))
    x = fit.x[order].astype(np.float32)[..., None] / 255.0
    model.fit(x, fit.y[order], batch_size=BATCH, epochs=epochs, class_weight=weight, verbose=2,
              callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: 1e-3 * 0.6**epoch)])

    held_scores = model.predict(held.x.astype(np.float32)[..., None] / 255.0, batch_size=512, verbose=0)[:, 0]
    real = held_scores[held.y == 0]
    flag_above = threshold_for(real, VALIDATION_FLAG_RATE)
    caught = float((held_scores[held.y == 1] > flag_above).mean())
    save_atomic(model, out)
    card = {
        "name": out.stem,
        "file": out.name,
        "kind": "not-a-digit detector",
        "flag_above": flag_above,
        "held_out": {
            "digits": int((held.y == 0).sum()),
            "non_digits": int((held.y == 1).sum()),
            "digits_flagged": float((real > flag_above).mean()),
            "non_digits_caught": caught,
            "note": "MNIST training digits 50,000-59,999 and drawn non-digits from the training fonts: how the threshold was set",
        },
        "training": {
            "digits": int((fit.y == 0).sum()),
            "non_digits": int((fit.y == 1).sum()),
            "kinds": list(nondigits.TRAINING_KINDS),
            "fonts": [f.name for f in training_fonts],
            "mnist": str(mnist),
            "mnist_sha256": data.train_sha256,
            "usps_train": str(usps) if usps else None,
            "epochs": epochs,
            "seed": seed,
            "seconds": round(time.monotonic() - started, 1),
            "hardware": cards.hardware(),
            "tensorflow": tf.__version__,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    cards.write(out, card)
    log(f"flag above {flag_above:.4f}: held-out digits flagged {(real > flag_above).mean():.2%}, non-digits caught {caught:.2%}")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the not-a-digit detector.")
    parser.add_argument("--data", type=Path, required=True, help="MNIST folder or mnist.npz")
    parser.add_argument("--usps", type=Path, help="USPS zip.train(.gz): more real digits (never zip.test)")
    parser.add_argument("--out", type=Path, default=Path("models") / paths.DETECTOR_NAME)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--negatives", type=int, default=60_000)
    args = parser.parse_args(argv)
    train(args.data, args.out, args.usps, args.seed, args.epochs, args.negatives)


if __name__ == "__main__":
    main()
