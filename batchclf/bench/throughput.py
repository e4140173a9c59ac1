"""``batchclf bench``: throughput on this machine, from naive to end to end.

1. one ``model.predict`` call per image (how a naive script does it);
2. batched inference on already-preprocessed arrays (the upper bound);
3. end-to-end ``classify`` on N small 28x28 PNGs;
4. end-to-end ``classify`` on N large (~``size`` px) JPEG/PNG scans.

For cases 3 and 4 the same run also measures what each file costs per stage,
each stage alone (:mod:`batchclf.bench.stages`): the ideal rate for this
machine's cores and how close end to end comes to it.

Inputs are made from MNIST test digits when ``--data`` is given, else from
synthetic digits, in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

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


def end_to_end(name: str, folder: Path, model_path: Path, workers: int | None, batch_size: int | None) -> BenchResult:
    from batchclf.classify import ClassifyOptions, run
    from batchclf.jobs.folder import read_job

    with tempfile.TemporaryDirectory() as out:
        job = run([folder], ClassifyOptions(model=model_path, out_dir=Path(out), workers=workers, batch_size=batch_size), progress=False)
        summary = read_job(job).meta
    return BenchResult(name, summary["files"], summary["seconds"])


def run_all(
    model_path: Path, n: int, size: int, data: Path | None, workers: int | None, batch_size: int | None, stages: bool = True
) -> BenchRun:
    from PIL import Image

    from batchclf.bench import stages as stage_costs
    from batchclf.model import card as cards
    from batchclf.model.spec import ModelSpec

    images, labels = sample_digits(n, data)
    predictor = ModelSpec(model_path, batch_size=batch_size).predictor()
    review_below = cards.review_below(predictor.card)
    run = BenchRun([naive(model_path, images), batched(predictor, images)])

    def case(name: str, folder: Path, sample: int) -> None:
        result = end_to_end(name, folder, model_path, workers, batch_size)
        run.results.append(result)
        if stages:
            files = stage_costs.sample_files(folder, sample)
            run.stages.append((stage_costs.measure(name, files, predictor, review_below), result))

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
