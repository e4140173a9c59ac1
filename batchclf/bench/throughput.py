"""``batchclf bench``: throughput on this machine, from naive to end to end.

1. one ``model.predict`` call per image (how a naive script does it);
2. batched inference on already-preprocessed arrays (the upper bound);
3. end-to-end ``classify`` on N small 28x28 PNGs;
4. end-to-end ``classify`` on N/5 large (~``size`` px) JPEG/PNG scans;
5. end-to-end ``classify`` on N/5 realistic mixed scans (JPEG/PNG/TIFF/BMP,
   ~370 px on average, :mod:`batchclf.bench.mixed`), against the plain-decode
   floor: what the cores could do if all they did was open each file with Pillow.

Every case runs the networks ``classify`` runs (its one :func:`batchclf.classify.model_spec`:
the classifier, the not-a-digit detector resolved as ``--detector auto`` resolves it,
and the second look when the card asks for it), so the batched upper bound and the
ideal count all of them.

For cases 3 to 5 the same run also measures what each file costs per stage,
each stage alone (:mod:`batchclf.bench.stages`): the ideal rate for this
machine's cores and how close end to end comes to it.

Inputs are made from MNIST test digits when ``--data`` is given, else from
synthetic digits, in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batchclf.bench.common import sample_digits, write_bench_scans
from batchclf.bench.stages import StageTable


@dataclass
class BenchResult:
    name: str
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class BenchRun:
    results: list[BenchResult]
    stages: list[tuple[StageTable, BenchResult]] = field(default_factory=list)  # per end-to-end case
    networks: str = ""  # what every inference in this run ran (see networks())

    def stage_rows(self) -> list[dict]:
        return [table.as_dict(result.rate) for table, result in self.stages]


STAGE_SAMPLE_SMALL = 3000  # files the per-stage costs are measured on
STAGE_SAMPLE_LARGE = 1000


def naive(model_path: Path, images: np.ndarray, count: int = 200) -> BenchResult:
    from batchclf.model.predictor import load_keras_model

    model = load_keras_model(model_path)
    x = images[:count, :, :, None].astype(np.float32) / 255.0
    model.predict(x[:1], verbose=0)
    started = time.perf_counter()
    for i in range(len(x)):
        model.predict(x[i : i + 1], verbose=0)
    return BenchResult("1. model.predict per image", len(x), time.perf_counter() - started)


def batched(predictor, images: np.ndarray) -> BenchResult:
    x = images[..., None].astype(np.float32) / 255.0
    predictor.predict(x[: predictor.batch_size])
    started = time.perf_counter()
    predictor.predict(x)
    return BenchResult("2. batched inference on arrays", len(x), time.perf_counter() - started)


def end_to_end(name: str, folder: Path, options) -> BenchResult:
    """``classify`` over ``folder`` with ``options`` (a :class:`batchclf.classify.ClassifyOptions`), timed by the job itself."""
    from batchclf.classify import run
    from batchclf.jobs.folder import read_job

    with tempfile.TemporaryDirectory() as out:
        job = run([folder], dataclasses.replace(options, out_dir=Path(out)), progress=False)
        summary = read_job(job).meta
    return BenchResult(name, summary["files"], summary["seconds"])


def networks(predictor) -> str:
    """Which networks a predictor runs per batch, in words (the bench's notes say what was timed)."""
    model = predictor.describe()
    parts = [f"classifier {model['file']}"]
    if model.get("detector"):
        parts.append(f"detector {model['detector']['file']}")
    if model.get("second_look"):
        parts.append("second look")
    return " + ".join(parts)


def bench_options(model_path: Path, workers: int | None, batch_size: int | None, detector: str | Path | None = "auto",
                  home: Path | None = None):
    """The ``classify`` options every case runs with: the detector resolved as ``classify --detector`` resolves it."""
    from batchclf import paths
    from batchclf.classify import ClassifyOptions

    return ClassifyOptions(model=model_path, out_dir=Path("."), workers=workers, batch_size=batch_size,
                           detector=paths.detector(detector, home))


def run_all(
    model_path: Path, n: int, size: int, data: Path | None, workers: int | None, batch_size: int | None, stages: bool = True,
    detector: str | Path | None = "auto", home: Path | None = None, mixed: bool = True,
) -> BenchRun:
    """Every case; ``detector`` as ``classify --detector`` takes it (``auto``, ``off`` or a file), resolved in ``home``."""
    from PIL import Image

    from batchclf.bench import mixed as mixed_set
    from batchclf.bench import stages as stage_costs
    from batchclf.classify import model_spec

    options = bench_options(model_path, workers, batch_size, detector, home)
    images, labels = sample_digits(n, data)
    predictor = model_spec(options).predictor()  # the networks classify runs, built the way classify builds them
    review_below = predictor.review_below
    run = BenchRun([naive(model_path, images), batched(predictor, images)], networks=networks(predictor))

    def case(name: str, folder: Path, sample: int, floor_of: list[Path] | None = None) -> None:
        result = end_to_end(name, folder, options)
        run.results.append(result)
        if stages:
            files = stage_costs.sample_files(folder, sample)
            table = stage_costs.measure(name, files, predictor, review_below, networks=run.networks)
            if floor_of is not None:
                table.floor = mixed_set.plain_decode_cost(floor_of)
            run.stages.append((table, result))

    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small"
        small.mkdir()
        for i, digit in enumerate(images):
            Image.fromarray(digit).save(small / f"{i:06d}.png")
        case("3. classify, 28x28 PNGs", small, STAGE_SAMPLE_SMALL)
        large = Path(tmp) / "large"
        large_n = max(1, n // 5)
        write_bench_scans(images[:large_n], labels[:large_n], large, size)
        case(f"4. classify, ~{size}px scans", large, STAGE_SAMPLE_LARGE)
        if mixed:
            folder = Path(tmp) / "mixed"
            written = mixed_set.write_mixed_scans(images[-large_n:], labels[-large_n:], folder)
            case(f"5. classify, mixed {mixed_set.describe(written)}", folder, STAGE_SAMPLE_LARGE, floor_of=written)
    return run


def table(results: list[BenchResult] | BenchRun) -> list[dict]:
    if isinstance(results, BenchRun):
        results = results.results
    naive_rate, upper = results[0].rate, results[1].rate
    return [
        {
            "case": r.name,
            "images": r.images,
            "seconds": round(r.seconds, 3),
            "images_per_s": round(r.rate, 1),
            "vs_batched": round(r.rate / upper, 3),
            "vs_naive": round(r.rate / naive_rate, 1),
        }
        for r in results
    ]
