"""``batchclf classify``: one batch job over files and folders, written to a job folder."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from batchclf.atomic import publish
from batchclf.jobs import writers as reports
from batchclf.scan.decode import MB, Limits
from batchclf.scan.discovery import discover, files_base
from batchclf.errors import EmptyInputError, InputPathError, OutputPathError, SettingsError
from batchclf.limits import MAX_BATCH, MAX_WORKERS
from batchclf.jobs import folder as job_folder
from batchclf.jobs.rows import content_digest, duplicate, now_iso, starts_file


WRITE_EVERY = 512  # rows buffered between report writes


@dataclass(frozen=True)
class ClassifyOptions:
    model: Path
    out_dir: Path
    batch_size: int | None = None
    workers: int | None = None
    review_below: float | None = None
    target_error: float | None = None  # the review threshold from the card's error-vs-coverage curve
    device: str = "auto"
    command: str = ""
    max_pages: int | None = None  # per-file caps; None: batchclf.scan.decode's defaults
    max_file_mb: int | None = None
    engine: str = "local"  # or "ray" (batchclf.engines.get_engine)
    input_scale: float | None = None
    detector: Path | None = None  # the not-a-digit detector; None: none
    dedupe: bool = False  # files whose bytes an earlier file of the job had: ``duplicate`` rows, as the daemon writes
    ray_address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    metrics_file: Path | None = None  # a Prometheus text file for node_exporter, written when the job is complete


def run(paths: Iterable[Path], options: ClassifyOptions, progress: bool | None = None) -> Path:
    """Classify everything under ``paths``; returns the job folder holding the reports.

    A job that cannot finish (an error, Ctrl-C) removes its job folder: no
    half-written ``.partial`` files are left for a reader to trip on.
    """
    paths = [Path(p) for p in paths]
    _check_bounds(options)
    _check_inputs(paths)
    folder = _create_job_folder(options.out_dir)
    try:
        meta = _run_job(folder, paths, options, progress)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise OutputPathError(f"cannot write job folder {folder}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if options.metrics_file is not None:
        # After the job is complete, outside the cleanup above: a metrics file that cannot be written is
        # logged and never costs the job. Imported here: prometheus_client only for runs that ask for it.
        from batchclf.metrics.textfile import write_job_metrics

        write_job_metrics(options.metrics_file, meta)
    return folder


def _check_bounds(options: ClassifyOptions) -> None:
    # The CLI's flags are bounded already; this stops a caller in code (bench, a script) from a 292 GiB batch.
    for name, value, low, high in (("batch_size", options.batch_size, 1, MAX_BATCH), ("workers", options.workers, 0, MAX_WORKERS)):
        if value is not None and not low <= value <= high:
            raise SettingsError(f"{name} must be {low} to {high}, got {value}")


def _check_inputs(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise InputPathError(f"input path not found: {', '.join(missing)}")
    if next(iter(discover(paths)), None) is None:  # stops at the first file: cheap on any tree
        raise EmptyInputError(f"nothing to classify: no image files in {', '.join(map(str, paths))}")


def _create_job_folder(out_dir: Path) -> Path:
    try:
        return job_folder.create_job_folder(out_dir)
    except OSError as exc:
        raise OutputPathError(f"cannot create a job folder in {out_dir}: {exc.strerror or exc}") from exc


def _run_job(folder: Path, paths: list[Path], options: ClassifyOptions, progress: bool | None) -> dict:
    from batchclf.engines import get_engine
    from batchclf.engines.base import EngineSettings

    limits = Limits.from_options(options.max_pages, options.max_file_mb)
    spec = model_spec(options)
    settings = EngineSettings(spec, workers=options.workers, limits=limits, address=options.ray_address,
                              actors=options.actors, gpus_per_actor=options.gpus_per_actor)
    starting = time.perf_counter()
    with get_engine(options.engine)(settings) as engine:
        started, clock = now_iso(), time.perf_counter()
        startup = clock - starting  # loading the model and starting the workers: recorded apart from the work
        csv_tmp = job_folder.partial(folder, job_folder.RESULTS_CSV)
        jsonl_tmp = job_folder.partial(folder, job_folder.RESULTS_JSONL)
        writer = reports.RowWriter(csv_tmp, jsonl_tmp)
        tally = reports.Tally()
        show = sys.stderr.isatty() if progress is None else progress
        total = sum(1 for _ in discover(paths)) if show else None
        pending: list[dict] = []
        try:
            with _progress(show, total) as advance:
                rows = engine.rows(discover(paths))
                for row in (Duplicates().mark(rows) if options.dedupe else rows):
                    pending.append(row)
                    tally.add(row)
                    if starts_file(row):
                        advance()
                    if len(pending) >= WRITE_EVERY:
                        writer.write(pending)
                        pending.clear()
                writer.write(pending)
        finally:
            writer.close()
        seconds = time.perf_counter() - clock
        meta = job_meta(folder.name, options, engine.describe(), limits, paths, started, seconds, tally, startup)
    reports.write_results_json(folder / job_folder.RESULTS_JSON, meta, jsonl_tmp)
    publish(csv_tmp, folder / job_folder.RESULTS_CSV)
    os.unlink(jsonl_tmp)
    # Last: a job folder with a summary is complete (batchclf.jobs.folder.read_job relies on it).
    reports.write_summary(folder / job_folder.SUMMARY_JSON, meta)
    return meta


def model_spec(options: ClassifyOptions):
    """The model a classify job runs, as one spec (``batchclf bench`` builds its predictor from it too, so it times the same networks)."""
    from batchclf.model.spec import ModelSpec

    return ModelSpec(
        model=options.model, device=options.device, batch_size=options.batch_size, input_scale=options.input_scale,
        detector=options.detector, review_below=options.review_below, target_error=options.target_error,
    )


class Duplicates:
    """``classify --dedupe``: a file whose bytes (sha256) an earlier file of the job had becomes ``duplicate`` rows.

    Which files take part is :func:`batchclf.jobs.rows.content_digest`'s rule,
    the daemon's too: a file is judged on all its pages, so its rows are held
    until its last page has come (an engine gives a file's rows together).
    Marked after labelling, so every engine gets it alike; one digest per distinct file is held.
    """

    def __init__(self):
        self.first: dict[str, str] = {}  # sha256 -> the first file's first row (``file#1``)

    def mark(self, rows: Iterable[dict]) -> Iterator[dict]:
        held: list[dict] = []  # the rows of the file being read
        for row in rows:
            if held and row["file"] != held[0]["file"]:
                yield from self._judged(held)
                held = []
            held.append(row)
        yield from self._judged(held)

    def _judged(self, rows: list[dict]) -> list[dict]:
        digest = content_digest(rows)
        if digest is None:
            return rows
        earlier = self.first.get(digest)
        if earlier is None:
            self.first[digest] = f"{rows[0]['file']}#1"
            return rows
        return [duplicate(row, earlier, row.get("model")) for row in rows]


def job_meta(job_id, options, engine_meta: dict, limits, paths, started, seconds, tally, startup: float) -> dict:
    """The job's metadata: what ran (``engine_meta``: engine, model, device, batch size, workers...), on what, how fast.

    ``seconds`` (and so ``files_per_second``) counts from the moment the engine was ready; ``startup_seconds``
    is what getting it ready took (loading the model, starting the workers or Ray).
    """
    counts = tally.as_dict()
    return {
        "job_id": job_id,
        "kind": job_folder.JobKind.CLASSIFY.value,
        "command": options.command,
        "inputs": [os.path.abspath(p) for p in paths],  # absolute: the report finds the inputs from anywhere
        "files_relative_to": os.path.abspath(files_base(paths)),  # rows' ``file`` is relative to this folder
        "started": started,
        "finished": now_iso(),
        "seconds": round(seconds, 3),
        "startup_seconds": round(startup, 3),
        **engine_meta,
        "max_pages": limits.max_pages,
        "max_file_mb": limits.max_bytes // MB,
        **counts,
        "files_per_second": round(counts["files"] / seconds, 2) if seconds > 0 else None,
    }


# The rate shown is measured over windows of at least this long, then smoothed:
# rows arrive a whole batch at once, so the time between two files is no measure.
RATE_WINDOW_SECONDS = 1.0
RATE_SMOOTHING = 0.5  # weight of the newest window


class SmoothedRate:
    """Files per second from (time, files done) readings: windowed, then an exponential moving average."""

    def __init__(self):
        self._last: tuple[float, float] | None = None
        self.rate: float | None = None

    def update(self, now: float, done: float) -> float | None:
        if self._last is None:
            self._last = (now, done)
        elif now - self._last[0] >= RATE_WINDOW_SECONDS:
            then, before = self._last
            latest = (done - before) / (now - then)
            self.rate = latest if self.rate is None else self.rate + RATE_SMOOTHING * (latest - self.rate)
            self._last = (now, done)
        return self.rate


def _files_per_second_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FilesPerSecond(ProgressColumn):
        def __init__(self):
            super().__init__()
            self.meter = SmoothedRate()

        def render(self, task):
            rate = self.meter.update(task.get_time(), task.completed)
            return Text(f"{rate:.0f} files/s" if rate else "")

    return FilesPerSecond()


class _progress:
    """A rich progress bar (files/s, ETA) on a terminal; nothing otherwise."""

    def __init__(self, show: bool, total: int | None):
        self.show, self.total = show, total

    def __enter__(self):
        if not self.show:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("classify"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            _files_per_second_column(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("classify", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.show:
            self.bar.stop()
        return False
