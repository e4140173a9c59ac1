"""Leave-writers-out: what the models do on writers they never saw, measured by training without them.

The writers of a labelled folder (``WRITER/DIGIT/*.png``) are split into
folds; for each fold the classifier and the not-a-digit detector are
fine-tuned on every other writer (plus the extra sets, e.g. USPS
``zip.train``) and score the fold's writers.  Every writer is scored once,
by models that never saw them.  The pooled scores give the unseen figures
(mean and worst writer, ``ok`` rows right, review share), the error-vs-
coverage curve a review threshold is chosen from, and the detector
threshold that flags a given share of unseen writers' digits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from batchclf.datasets.labelled import LabelledSet, concatenate, read_labelled
from batchclf.datasets.mnist import load as load_mnist
from batchclf.model import card as cards
from batchclf.model import detector_tuning
from batchclf.model.calibration import apply_temperature
from batchclf.model.finetune import fine_tune
from batchclf.model.predictor import load_keras_model
from batchclf.model.second_look import SHIFTS, doubtful, shifted
from batchclf.scan.preprocess import mnist_to_input

# The detector's training sides, drawn once per run: drawn non-digits, and MNIST digits rendered as scans.
NEGATIVES = 20_000
SCANNED_DIGITS = 10_000
FLAG_RATE = 0.01  # the share of unseen writers' digits the detector's threshold may flag


def writer_folds(groups: np.ndarray, n: int) -> list[list[str]]:
    """The writers, sorted, cut into ``n`` contiguous folds (10 writers, 5 folds: 0001-0002, 0003-0004, ...)."""
    writers = sorted(set(groups.tolist()))
    if n < 2 or n > len(writers):
        from batchclf.errors import DataFileError

        raise DataFileError(f"{n} folds need between 2 and {len(writers)} writers' folders; found {len(writers)}")
    return [[str(w) for w in part] for part in np.array_split(np.array(writers), n)]


def score_classifier(model, temperature: float, images: np.ndarray) -> np.ndarray:
    """Calibrated probabilities ``(len(SHIFTS), N, 10)``: the image as it is first, then each shifted copy."""
    inputs = mnist_to_input(images)
    return np.stack([apply_temperature(model.predict(shifted(inputs, dy, dx), batch_size=512, verbose=0), temperature)
                     for dy, dx in SHIFTS])


def train_pair(base: Path, detector_base: Path, extra: LabelledSet, data, sides, out: Path, epochs: int, seed: int,
               styles: float = 0.0, rendered=None):
    """Fine-tune the classifier and the detector on ``extra``; save both under ``out``; return (classifier, T, detector)."""
    out.mkdir(parents=True, exist_ok=True)
    card = fine_tune(base, extra, data, out / "classifier.keras", epochs=epochs, seed=seed, progress=False, styles=styles,
                     replay_extra=rendered)
    if (out / "detector.keras").is_file():  # a resumed run (or one that changes only the classifier's recipe)
        detector = load_keras_model(out / "detector.keras")
    else:
        detector = detector_tuning.fine_tune_detector(detector_base, sides[0], extra.images, sides[1], seed=seed)
        from batchclf.model.training import save_atomic

        save_atomic(detector, out / "detector.keras")
    return load_keras_model(out / "classifier.keras"), cards.temperature(card), detector


def run(mnist: Path, writers_dir: Path, extra_sets: list[Path], base: Path, detector_base: Path, out: Path,
        folds: int = 5, epochs: int = 3, seed: int = 1, final: bool = True, styles: float = 0.0, rendered: int = 0,
        log=print) -> None:
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    data = load_mnist(mnist) if isinstance(mnist, (str, Path)) or mnist is None else mnist
    writers = read_labelled([writers_dir])
    others = read_labelled(extra_sets) if extra_sets else concatenate([])
    log(f"{len(writers)} writer digits, {len(others)} extra, {time.monotonic() - started:.0f} s")
    sides_file = out / "sides.npz"
    if sides_file.is_file():
        with np.load(sides_file) as saved:
            sides = (saved["digits"], saved["non_digits"])
    else:
        sides = detector_tuning.training_sides(data.x_train[:50_000], data.y_train[:50_000], NEGATIVES, SCANNED_DIGITS, seed)
        np.savez_compressed(sides_file, digits=sides[0], non_digits=sides[1])
    if styles:
        # The detector must take the styled digits for digits too: the styled sevens and ones, all of them.
        from batchclf.model.finetune import with_national_styles

        chosen = np.flatnonzero(np.isin(data.y_train[:50_000], (1, 7)))
        styled = with_national_styles(data.x_train[chosen], data.y_train[chosen], 1.0, np.random.default_rng(seed))
        sides = (np.concatenate([sides[0], styled]), sides[1])
    log(f"detector sides: {len(sides[0])} digits, {len(sides[1])} non-digits, {time.monotonic() - started:.0f} s")
    replay_extra = rendered_digits(data, rendered, out, seed) if rendered else None
    split = writer_folds(writers.groups, folds)
    (out / "folds.json").write_text(json.dumps({"folds": split, "extra": [str(p) for p in extra_sets],
                                                "epochs": epochs, "seed": seed, "styles": styles, "rendered": rendered, "base": str(base),
                                                "detector_base": str(detector_base)}, indent=1))
    for index, held_writers in enumerate(split):
        fold_dir = out / f"fold-{index}"
        if (fold_dir / "scores.npz").is_file():
            continue
        held = np.isin(writers.groups, held_writers)
        model, temperature, detector = train_pair(base, detector_base, concatenate([others, writers.select(~held)]),
                                                  data, sides, fold_dir, epochs, seed + index, styles,
                                                  replay_extra)
        np.savez_compressed(fold_dir / "scores.npz", index=np.flatnonzero(held), labels=writers.labels[held],
                            groups=writers.groups[held], probs=score_classifier(model, temperature, writers.images[held]),
                            not_digit=detector_tuning.scores(detector, writers.images[held]))
        log(f"fold {index} ({', '.join(held_writers)}) done, {time.monotonic() - started:.0f} s")
    if final and not (out / "final" / "classifier.json").is_file():  # a finished run resumes to its cards
        train_pair(base, detector_base, concatenate([others, writers]), data, sides, out / "final", epochs, seed, styles,
                   replay_extra)
        log(f"final models trained on every writer, {time.monotonic() - started:.0f} s")


def rendered_digits(data, n: int, out: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MNIST training digits (of 0-49,999) rendered as scans and read back as prediction reads them, cached."""
    cache = Path(out) / "rendered.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return saved["x"], saved["y"]
    from batchclf.model.detector import scanned_or_none

    chosen = np.random.default_rng(seed + 17).choice(50_000, n, replace=False)
    images = scanned_or_none([data.x_train[i] for i in chosen], seed + 17, 2)
    kept = [i for i, image in enumerate(images) if image is not None]
    x, y = np.stack([images[i] for i in kept]), data.y_train[chosen[kept]].astype(np.int64)
    np.savez_compressed(cache, x=x, y=y)
    return x, y


def pooled(out: Path) -> dict[str, np.ndarray]:
    """Every fold's scores in one set: each writer's digits scored by the models that never saw that writer."""
    parts = []
    for scores in sorted(Path(out).glob("fold-*/scores.npz")):
        with np.load(scores) as saved:
            parts.append({key: saved[key] for key in saved.files})
    if not parts:
        from batchclf.errors import DataFileError

        raise DataFileError(f"{out}: no fold has finished yet")
    return {key: np.concatenate([part[key] for part in parts], axis=1 if key == "probs" else 0) for key in parts[0]}


def detector_threshold(not_digit: np.ndarray, rate: float) -> float:
    """The detector score above which ``rate`` of these (unseen writers') digits lie."""
    return float(np.quantile(not_digit, 1.0 - rate))


def after_second_look(probs: np.ndarray, threshold: float, second_look: bool, looked: np.ndarray | None = None) -> np.ndarray:
    """The probabilities rows end with at ``threshold``: the first look's, the doubtful ones replaced by the mean over
    the image and its shifted copies (``probs``: (shifts, N, 10); ``looked``: that mean, when already computed)."""
    first = probs[0]
    if not second_look:
        return first
    rows = doubtful(first, threshold)
    out = first.copy()
    out[rows] = (probs.mean(axis=0) if looked is None else looked)[rows]
    return out


def figures(pool: dict[str, np.ndarray], review_below: float, flag_above: float, second_look: bool) -> dict:
    """Unseen-writer figures at one review threshold: accuracy per writer, ``ok`` rows right, review share."""
    probs = after_second_look(pool["probs"], review_below, second_look)
    labels = pool["labels"]
    predicted = probs.argmax(axis=1)
    correct = predicted == labels
    flagged = pool["not_digit"] > flag_above
    ok = (probs.max(axis=1) >= review_below) & ~flagged
    per_writer = {str(w): float(correct[pool["groups"] == w].mean()) for w in sorted(set(pool["groups"].tolist()))}
    return {
        "digits": int(len(labels)),
        "accuracy": float(correct.mean()),
        "writers_mean": float(np.mean(list(per_writer.values()))),
        "worst_writer": min(per_writer.items(), key=lambda item: item[1]),
        "per_writer": per_writer,
        "flagged": float(flagged.mean()),
        "review_share": float(1 - ok.mean()),
        "ok_right": float(correct[ok].mean()) if ok.any() else None,
        "ok_wrong": int((ok & ~correct).sum()),
    }


def selective_curve(pool: dict[str, np.ndarray], flag_above: float, second_look: bool = True) -> list[dict]:
    """Coverage and error among accepted unseen-writer digits at every candidate threshold, as classify decides."""
    from batchclf.model import selective

    looked = pool["probs"].mean(axis=0)  # once, not per threshold
    confidence, correct = [], []
    for threshold in selective.THRESHOLDS:
        probs = after_second_look(pool["probs"], threshold, second_look, looked)
        confidence.append(probs.max(axis=1))
        correct.append(probs.argmax(axis=1) == pool["labels"])
    return selective.curve(np.stack(confidence), np.stack(correct), pool["not_digit"] > flag_above)



def unseen_figures(out: Path, review_below: float, flag_rate: float = FLAG_RATE, second_look: bool = True) -> dict:
    """What a finished run measured on unseen writers, for the cards and the README."""
    pool = pooled(out)
    flag_above = detector_threshold(pool["not_digit"], flag_rate)
    split = json.loads((Path(out) / "folds.json").read_text())
    return {
        "flag_above": flag_above,
        "at_review_below": {"review_below": review_below, "second_look": second_look,
                            **figures(pool, review_below, flag_above, second_look)},
        "curve": selective_curve(pool, flag_above, second_look),
        "folds": split["folds"],
        "recipe": {key: split[key] for key in ("extra", "epochs", "seed", "styles") if key in split},
    }


def write_cards(out: Path, review_below: float, command: str, when: str, flag_rate: float = FLAG_RATE) -> dict:
    """Cards for the models trained on every writer (``out/final``), with the unseen figures of the folds."""
    measured = unseen_figures(out, review_below, flag_rate)
    final = Path(out) / "final"
    lwo = {
        "method": "leave-writers-out: each fold's writers scored by a classifier and a detector fine-tuned without them",
        "folds": measured["folds"],
        "recipe": measured["recipe"],
        "command": command,
        "date": when,
    }
    classifier = cards.read(final / "classifier.keras")
    base = cards.read(Path(json.loads((Path(out) / "folds.json").read_text())["base"]))
    classifier.update({
        "base_training": base.get("training"),  # how the parent was trained (MNIST), which fine_tuning starts from
        "name": "default",
        "file": "default.keras",
        "review_below": review_below,
        "second_look": True,
        "leave_writers_out": {**lwo, **measured["at_review_below"]},
        "selective": {
            "measured_on": "unseen writers (leave-writers-out), with the not-a-digit detector at its flag_above "
                           "and the second look, as classify decides",
            "digits": measured["at_review_below"]["digits"],
            "curve": measured["curve"],
        },
    })
    cards.write(final / "classifier.keras", classifier)
    detector = cards.read(Path(json.loads((Path(out) / "folds.json").read_text())["detector_base"]))
    detector.pop("lite", None)  # the base's LiteRT sidecar was made from the base, not this detector
    detector.update({
        "flag_above": measured["flag_above"],
        "threshold": {"digits_flagged": flag_rate, "set_on": "unseen writers' digits (leave-writers-out)"},
        "fine_tuning": {
            "real_digits": "USPS zip.train and every handwritten-scans writer, beside MNIST digits and drawn non-digits",
            "epochs": detector_tuning.EPOCHS, "learning_rate": detector_tuning.LEARNING_RATE,
            "real_share": detector_tuning.REAL_SHARE, **lwo,
        },
        "created": when,
    })
    cards.write(final / "detector.keras", detector)
    return measured


def cross_validate(labelled: list[Path], mnist, base: Path, detector_base: Path, out: Path, folds: int, epochs: int,
                   seed: int, review_below: float, log=print) -> dict:
    """``train --cross-validate``: a user's writers, each scored by models fine-tuned without them.

    The first folder in ``labelled`` holds the writers (``WRITER/DIGIT/*.png``); the other paths
    (folders or USPS files) are learned from in every fold and never scored.
    """
    writers = next((Path(p) for p in labelled if Path(p).is_dir()), None)
    if writers is None:
        from batchclf.errors import DataFileError

        raise DataFileError("--cross-validate needs --extra WRITERS: a folder of WRITER/DIGIT/ sub-folders")
    others = [Path(p) for p in labelled if Path(p) != writers]
    run(mnist, writers, others, base, detector_base, out, folds=folds, epochs=epochs, seed=seed, final=False, log=log)
    return unseen_figures(out, review_below)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Leave-writers-out fine-tuning of the classifier and the detector.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--writers", type=Path, required=True)
    parser.add_argument("--extra", type=Path, action="append", default=[])
    parser.add_argument("--base", type=Path, default=Path("models/default.keras"))
    parser.add_argument("--detector", type=Path, default=Path("models/detectors/not-a-digit.keras"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-final", action="store_true")
    parser.add_argument("--styles", type=float, default=0.0, help="share of MNIST sevens crossed and ones given a foot")
    parser.add_argument("--rendered", type=int, default=0, help="MNIST training digits rendered as scans, replayed too")
    parser.add_argument("--write-cards", type=float, metavar="REVIEW_BELOW",
                        help="after the run: write the cards of OUT/final/ (classifier and detector) with the unseen figures, "
                             "the error-vs-coverage curve and the detector threshold, at this review threshold")
    args = parser.parse_args(argv)
    log = lambda text: print(time.strftime("%H:%M:%S"), text, flush=True)  # noqa: E731
    run(args.data, args.writers, args.extra, args.base, args.detector, args.out, args.folds, args.epochs,
        final=not args.no_final, styles=args.styles, rendered=args.rendered, log=log)
    if args.write_cards is not None:
        command = "python -m batchclf.crossval " + " ".join(argv if argv is not None else sys.argv[1:])
        write_cards(args.out, args.write_cards, command, time.strftime("%Y-%m-%d", time.gmtime()))
        log(f"cards written in {args.out / 'final'}")


if __name__ == "__main__":
    main()
