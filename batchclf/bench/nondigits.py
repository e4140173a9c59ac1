"""How well the not-a-digit detector works: non-digits caught against real digits wrongly flagged.

The measuring set of non-digits is drawn by :mod:`batchclf.datasets.nondigits`
from what the detector never trained on (serif and math fonts, MNIST *test*
digits, other seeds), written as files (half 28x28 PNGs, half rendered scans)
and classified through the local engine exactly as ``batchclf classify`` does.
Real digits are scored with ``batchclf evaluate``'s own function on the sets
given (the handwritten scans, USPS ``zip.test``), so the "extra flagged" figure
is the share of real digits the detector sent to review that confidence alone
would have passed.

    python -m batchclf.bench.nondigits --data ../shared/data/mnist \\
        --scans ../shared/data/handwritten-scans --scans ../shared/data/usps/zip.test.gz
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from batchclf.datasets import nondigits

MEASURING_SEED = 10_000  # the detector trains on seeds 0..8


def write_measuring_set(folder: Path, mnist: Path, per_kind: int, seed: int = MEASURING_SEED) -> dict[str, int]:
    """``per_kind`` files of each kind in ``folder/KIND/``; returns how many were written per kind."""
    from batchclf.datasets.mnist import load

    _, measuring_fonts = nondigits.font_split(nondigits.installed_fonts())
    if not measuring_fonts:
        raise SystemExit("no serif or math fonts installed to draw measuring letters from (install fonts-dejavu)")
    source = nondigits.Source(measuring_fonts, load(mnist).x_test)
    rng = np.random.default_rng(seed)
    written = {}
    for kind in nondigits.KINDS:
        target = Path(folder) / kind
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            canvas = nondigits.draw(kind, source, rng)
            if i % 2 == 0:
                (target / f"{i:05d}.png").write_bytes(nondigits.mnist_form_png(canvas))
            else:
                data, suffix = nondigits.scan_file(canvas, rng)
                (target / f"{i:05d}{suffix}").write_bytes(data)
        written[kind] = per_kind
    return written


def non_digit_figures(folder: Path, model: Path, detector: Path | None) -> dict[str, dict]:
    """Per kind: how many rows, and the shares sent to review by the detector, by low confidence, in all."""
    from batchclf.engines import get_engine
    from batchclf.engines.base import EngineSettings
    from batchclf.model.spec import ModelSpec
    from batchclf.jobs.rows import BLANK, NOT_A_DIGIT, REVIEW
    from batchclf.scan.discovery import discover

    counts: dict[str, Counter] = {}
    with get_engine("local")(EngineSettings(ModelSpec(model, detector=detector))) as engine:
        review_below = engine.review_below
        for row in engine.rows(discover([folder])):
            tally = counts.setdefault(row["file"].split("/")[0], Counter())
            tally["n"] += 1
            tally["blank"] += row["status"] == BLANK  # an empty-looking cell is not read as a digit either
            tally["detector"] += row["error"] == NOT_A_DIGIT
            tally["confidence"] += row["confidence"] is not None and row["confidence"] < review_below
            tally["caught"] += row["status"] in (REVIEW, BLANK)
    return {kind: {key: tally[key] / tally["n"] for key in ("detector", "confidence", "caught", "blank")} | {"n": tally["n"]}
            for kind, tally in sorted(counts.items())}


def digit_figures(sets: list[Path], model: Path, detector: Path | None) -> dict[str, dict]:
    from batchclf.scan.pool import default_workers
    from batchclf.evaluate import evaluate_folder
    from batchclf.model.spec import ModelSpec

    predictor = ModelSpec(model, detector=detector).predictor()
    out = {}
    for path in sets:
        result = evaluate_folder(predictor, path, workers=default_workers())
        out[path.name] = {key: result[key] for key in ("n", "accuracy", "review_share", "not_digit_share", "not_digit_extra_share",
                                                        "ok_accuracy")}
    return out


def table(non_digits: dict[str, dict], digits: dict[str, dict]) -> str:
    lines = ["| set | n | caught by the detector | by low confidence | sent to review (or blank) in all |",
             "|---|---:|---:|---:|---:|"]
    total = Counter()
    for kind, f in non_digits.items():
        lines.append(f"| non-digits: {kind} | {f['n']} | {f['detector']:.1%} | {f['confidence']:.1%} | {f['caught']:.1%} |")
        for key in ("detector", "confidence", "caught"):
            total[key] += f[key] * f["n"]
        total["n"] += f["n"]
    if total["n"]:
        lines.append(f"| **non-digits, all** | {total['n']} | {total['detector'] / total['n']:.1%} | "
                     f"{total['confidence'] / total['n']:.1%} | **{total['caught'] / total['n']:.1%}** |")
    lines += ["", "| real digits | n | flagged by the detector | **extra** (confidence alone would pass) | review in all | ok rows right |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, f in digits.items():
        lines.append(f"| {name} | {f['n']} | {f['not_digit_share']:.2%} | **{f['not_digit_extra_share']:.2%}** | "
                     f"{f['review_share']:.2%} | {f['ok_accuracy']:.2%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from batchclf import paths
    from batchclf.bench.common import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="MNIST (its test digits make pairs and crossed-out digits)")
    parser.add_argument("--scans", type=Path, action="append", default=[], help="labelled real digits (a folder or a USPS file)")
    parser.add_argument("--per-kind", type=int, default=1000)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--detector", default="auto")
    args = parser.parse_args(argv)
    model = args.model or paths.default_model()
    detector = paths.detector(args.detector)
    if detector is None:
        raise SystemExit("no detector: train one with python -m batchclf.model.detector, or pass --detector FILE")
    with tempfile.TemporaryDirectory(prefix="batchclf-nondigits-") as folder:
        write_measuring_set(Path(folder), args.data, args.per_kind)
        non_digits = non_digit_figures(Path(folder), model, detector)
    digits = digit_figures(args.scans, model, detector)
    print(f"model {model.name}, detector {detector} ({machine()})")
    print(table(non_digits, digits))


if __name__ == "__main__":
    main()
