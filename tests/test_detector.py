"""The not-a-digit detector: drawing non-digits, flagged rows, the --detector option, and the shipped detector on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchclf.datasets import nondigits
from batchclf.jobs.rows import NOT_A_DIGIT, OK, REVIEW, labelled_rows, make_row
from tests.conftest import ROOT
from tests.helpers import invoke

SHIPPED_DETECTOR = ROOT / "models" / "detectors" / "not-a-digit.keras"
SCANS = ROOT.parent / "shared" / "data" / "handwritten-scans"


def fonts_or_skip() -> list[Path]:
    fonts = nondigits.installed_fonts()
    if not fonts:
        pytest.skip("no TrueType fonts installed (Debian: fonts-dejavu-core) to draw letters from")
    return fonts


@pytest.mark.parametrize("kind", nondigits.TRAINING_KINDS)
def test_every_kind_draws_ink_in_mnist_form(kind):
    fonts = fonts_or_skip()
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 5:23, 12:16] = 255  # narrow ones: crossing them out must not be a lone diagonal
    digits[1, 5:23, 6:22] = 255
    rng = np.random.default_rng(0)
    for _ in range(5):
        canvas = nondigits.draw(kind, nondigits.Source(fonts, digits), rng)
        assert canvas.dtype == np.uint8 and canvas.shape[0] == 28 and canvas.shape[1] >= 8
        assert (canvas > 128).sum() >= 10, "no ink drawn"
        square = nondigits.to_mnist_form(canvas)
        rows, cols = np.nonzero(square > 16)
        assert rows.max() - rows.min() <= 21 and cols.max() - cols.min() <= 21  # fitted into MNIST's 20x20 box


def test_letters_that_are_digit_shapes_are_never_drawn_and_fonts_split_cleanly():
    assert not set(nondigits.LETTERS) & set("OoIlZzSsBbgq")
    fonts = [Path(f"/f/{name}") for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuMathTeXGyre.ttf", "Other.ttf")]
    training, measuring = nondigits.font_split(fonts)
    assert {f.name for f in measuring} == {"DejaVuSerif.ttf", "DejaVuMathTeXGyre.ttf"}
    assert not set(training) & set(measuring) and set(training) | set(measuring) == set(fonts)


def test_a_pair_is_wider_than_high_and_a_scan_of_it_comes_back_through_prediction():
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, 4:24, 6:22] = 255  # 16 wide, 20 high
    rng = np.random.default_rng(1)
    pair = nondigits.pair(digits[0], digits[1], rng)
    rows, cols = np.nonzero(pair > 64)
    assert cols.max() - cols.min() > 1.3 * (rows.max() - rows.min())
    seen = nondigits.as_scan_input(pair, rng)
    assert seen is not None and seen.shape == (28, 28)
    rows, cols = np.nonzero(seen > 64)
    assert cols.max() - cols.min() > 1.3 * (rows.max() - rows.min())  # the normaliser kept both digits


def test_flagged_rows_go_to_review_with_the_reason_and_others_keep_their_status():
    bases = [make_row(file=f"{i}.png", page=1) for i in range(3)]
    probabilities = np.array([[0.99] + [0.001] * 9, [0.99] + [0.001] * 9, [0.5, 0.5] + [0.0] * 8])
    rows = labelled_rows(bases, probabilities, 0.9, "m", not_digit=np.array([True, False, False]))
    assert [(r["status"], r["error"]) for r in rows] == [(REVIEW, NOT_A_DIGIT), (OK, None), (REVIEW, None)]
    assert rows[0]["label"] == 0 and rows[0]["confidence"] == pytest.approx(0.99)  # the guess stays for the reviewer
    assert [r["status"] for r in labelled_rows(bases, probabilities, 0.9, "m")] == [OK, OK, REVIEW]


def write_inputs(folder: Path) -> None:
    folder.mkdir()
    thin = np.full((28, 28), 255, np.uint8)
    thin[8:10, 4:24] = 0  # a bar: the tiny model's class 3
    blot = np.full((28, 28), 255, np.uint8)
    blot[4:24, 4:24] = 0
    Image.fromarray(thin).save(folder / "thin.png")
    Image.fromarray(blot).save(folder / "blot.png")


def classify_rows(tmp_path: Path, *args) -> tuple[dict, dict]:
    result = invoke("classify", tmp_path / "in", "--out", tmp_path / "jobs", "--workers", "0", *args)
    assert result.exit_code == 0, result.output
    job = Path(result.stdout.strip().splitlines()[-1])
    report = json.loads((job / "results.json").read_text())
    return {row["file"]: row for row in report["rows"]}, report


def test_classify_sends_what_the_detector_flags_to_review_and_records_the_detector(tmp_path, tiny_model, ink_detector):
    write_inputs(tmp_path / "in")
    rows, report = classify_rows(tmp_path, "--model", tiny_model, "--detector", ink_detector)
    assert rows["blot.png"]["status"] == REVIEW and rows["blot.png"]["error"] == NOT_A_DIGIT
    assert rows["thin.png"]["error"] is None
    recorded = report["job"]["model"]["detector"]
    assert recorded["file"] == "blots.keras" and recorded["flag_above"] == 0.5 and len(recorded["sha256"]) == 64

    rows, report = classify_rows(tmp_path, "--model", tiny_model, "--detector", "off")
    assert rows["blot.png"]["error"] is None
    assert report["job"]["model"]["detector"] is None


def test_a_missing_or_cardless_detector_is_one_error_line(tmp_path, tiny_model, ink_detector):
    write_inputs(tmp_path / "in")
    result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--detector", tmp_path / "nope.keras")
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "nope.keras" in result.output
    cardless = tmp_path / "cardless.keras"
    cardless.write_bytes(ink_detector.read_bytes())
    result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--detector", cardless)
    assert result.exit_code == 1 and "flag_above" in result.output
    classifier = tmp_path / "classifier.keras"  # ten outputs: a classifier given as the detector
    classifier.write_bytes(tiny_model.read_bytes())
    classifier.with_suffix(".json").write_text(json.dumps({"flag_above": 0.5}))
    result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--detector", classifier)
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "gives (1,)" in result.output, result.output


def test_evaluate_and_predict_report_the_detector(tmp_path, tiny_model, ink_detector):
    write_inputs(tmp_path / "in")
    scans = tmp_path / "scans" / "writer" / "3"
    scans.mkdir(parents=True)
    for name in ("thin.png", "blot.png"):
        (scans / name).write_bytes((tmp_path / "in" / name).read_bytes())
    result = invoke("evaluate", "--data", tmp_path / "scans", "--model", tiny_model, "--detector", ink_detector, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["n"] == 2 and figures["not_digit_share"] == 0.5  # --data took the labelled folder
    predicted = invoke("predict", tmp_path / "in" / "blot.png", "--model", tiny_model, "--detector", ink_detector, "--json")
    assert json.loads(predicted.stdout)[0]["error"] == NOT_A_DIGIT


# The shipped detector, on sets it never trained on (skipped without them).


@pytest.fixture(scope="module")
def shipped_detector() -> Path:
    if not SHIPPED_DETECTOR.is_file():
        pytest.skip(f"no shipped detector at {SHIPPED_DETECTOR}")
    return SHIPPED_DETECTOR


@pytest.mark.integration
def test_the_shipped_detector_catches_unseen_non_digits(tmp_path, mnist_dir, shipped_model, shipped_detector):
    fonts_or_skip()
    from batchclf.bench.nondigits import non_digit_figures, write_measuring_set

    write_measuring_set(tmp_path / "set", mnist_dir / "mnist.npz", per_kind=60, seed=123)
    figures = non_digit_figures(tmp_path / "set", shipped_model, shipped_detector)
    caught = np.mean([f["caught"] for f in figures.values()])
    assert set(figures) == set(nondigits.KINDS)
    assert caught >= 0.85, figures  # docs/models.md's figure is measured on 1,000 a kind; this is a smaller draw


@pytest.mark.integration
def test_the_shipped_detector_rarely_flags_real_digits(shipped_model, shipped_detector):
    usps = ROOT.parent / "shared" / "data" / "usps" / "zip.test.gz"
    if not SCANS.is_dir() or not usps.is_file():
        pytest.skip(f"real digits not found at {SCANS} and {usps}")
    from batchclf.evaluate import evaluate_folder
    from batchclf.model.predictor import Predictor

    predictor = Predictor(shipped_model, detector=shipped_detector)
    # USPS meets the budget (<= 2% extra); the Swiss scans do not (4.3% measured, mostly their
    # continental ones, see docs/models.md): this guards against it getting worse.
    assert evaluate_folder(predictor, usps)["not_digit_extra_share"] <= 0.02
    assert evaluate_folder(predictor, SCANS, workers=2)["not_digit_extra_share"] <= 0.05


def test_the_daemon_flags_non_digits_too(tmp_path, tiny_model, ink_detector):
    from batchclf.watch.daemon import Daemon, WatchOptions
    from tests.helpers import report_rows

    write_inputs(tmp_path / "inbox")
    jobs = tmp_path / "jobs"
    options = WatchOptions(inbox=tmp_path / "inbox", out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=0,
                           detector=str(ink_detector))
    assert Daemon(options).run() == 0
    rows = {row["file"]: row for row in report_rows(jobs)}
    assert rows["blot.png"]["status"] == REVIEW and rows["blot.png"]["error"] == NOT_A_DIGIT
    assert rows["thin.png"]["error"] is None
