"""What each file costs, stage by stage, each measured alone: the ideal rate a pipeline could reach.

A file goes through five stages: read + hash (the bytes and their sha256),
decode (bytes to a grayscale page), normalise (page to the 28x28 the model
sees), inference (the model, batched) and row + report writing (the row
stub, its label, the CSV and JSONL lines and ``results.json``).  Each stage
runs alone over the same sample of files, and its cost is counted in
*core*-seconds: the CPU time of this process, all threads included
(inference uses every core; the other stages one).  With every core busy on
nothing but useful work, ``cores / sum(core-seconds per file)`` files a
second is the best a machine can do: the ideal rate.  End-to-end classify
divided by it is the pipeline's efficiency; what it loses is the handing of
files between processes, idle cores and scheduling.

The one cost a pipeline adds between processes, pickling a worker's results
to the main process, is measured too and shown apart: it is part of what the
efficiency ratio exposes, not a stage of the work.

The inference stage times every network classify runs (the predictor comes
from :func:`batchclf.classify.model_spec`): the classifier, the not-a-digit
detector and the second look on the digits it looks at again; its note names them.
A case may also carry a plain-decode floor (:mod:`batchclf.bench.mixed`):
``cores / core-us per file of a bare Pillow open + load + convert('L')``, the
rate no classify of those files can pass, shown apart with classify against it.
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batchclf.model.lite_runtime import cores  # the cores this process may run on
from batchclf.scan.pool import CHUNK_FILES  # files per worker task, as the local engine sends them

STAGES = ("read + hash", "decode", "normalise", "inference", "row + report writing")


@dataclass
class StageCost:
    stage: str
    core_us: float  # core-microseconds per file (best of the repeats)
    files: int
    note: str = ""


@dataclass
class StageTable:
    case: str
    files: int
    cores: int
    stages: list[StageCost]
    extra: list[StageCost] = field(default_factory=list)  # shown, not summed
    floor: float | None = None  # core-us per file of a plain Pillow decode of the case's files; None: not measured

    @property
    def core_us_per_file(self) -> float:
        return sum(s.core_us for s in self.stages)

    @property
    def ideal_rate(self) -> float:
        total = self.core_us_per_file
        return self.cores / (total * 1e-6) if total > 0 else float("nan")

    def as_dict(self, end_to_end_rate: float | None = None) -> dict:
        out = {
            "case": self.case,
            "files": self.files,
            "cores": self.cores,
            "stages": [
                {"stage": s.stage, "core_us_per_file": round(s.core_us, 1), "share": round(s.core_us / self.core_us_per_file, 3), "note": s.note}
                for s in self.stages
            ],
            "not_summed": [{"stage": s.stage, "core_us_per_file": round(s.core_us, 1), "note": s.note} for s in self.extra + self._floor_row(end_to_end_rate)],
            "core_us_per_file": round(self.core_us_per_file, 1),
            "ideal_files_per_s": round(self.ideal_rate, 1),
        }
        if end_to_end_rate is not None:
            out["end_to_end_files_per_s"] = round(end_to_end_rate, 1)
            out["vs_ideal"] = round(end_to_end_rate / self.ideal_rate, 3)
        if self.floor:
            out["plain_decode_core_us_per_file"] = round(self.floor, 1)
            out["plain_decode_floor_files_per_s"] = round(self.floor_rate, 1)
            if end_to_end_rate is not None:
                out["vs_floor"] = round(end_to_end_rate / self.floor_rate, 3)
        return out

    @property
    def floor_rate(self) -> float:
        """Files/s with every core doing nothing but a plain Pillow decode of these files."""
        return self.cores / (self.floor * 1e-6) if self.floor else float("nan")

    def _floor_row(self, end_to_end_rate: float | None) -> list[StageCost]:
        # Shown among the rows not summed, so every renderer of this table shows it as it is.
        if not self.floor:
            return []
        against = f"; classify = {end_to_end_rate / self.floor_rate:.2f} of it (target >= 0.5)" if end_to_end_rate else ""
        note = f"Pillow open + load + convert('L'), one process; floor = {self.cores} cores / it = {self.floor_rate:,.0f} files/s{against}"
        return [StageCost("plain-decode floor", self.floor, self.files, note)]


def best_cpu(run, repeats: int) -> float:
    """The least CPU time (this process, every thread) of ``repeats`` calls of ``run``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def normalise_cost(grays: list, normalize, repeats: int = 3, images: list | None = None) -> float:
    """Core-seconds for ``normalize`` over every page in ``grays`` (best of ``repeats``); its outputs land in ``images``.

    The bench's normalise stage, and the figure to compare two normalisers by: run them
    interleaved on the same pages (``normalize`` is ``preprocess.normalize_to_bytes`` or a
    candidate with its signature).
    """
    images = [] if images is None else images

    def normalise_all():
        images.clear()
        images.extend(normalize(gray) for gray in grays)

    return best_cpu(normalise_all, repeats)


def sample_files(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files of a (flat or nested) bench folder, in name order."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    return files[:limit]


def measure(case: str, files: list[Path], predictor, review_below: float = 0.0, repeats: int = 3, networks: str = "") -> StageTable:
    """The five stages over ``files``, each alone, best of ``repeats``; ``predictor`` is a loaded Predictor.

    ``networks`` names what the predictor runs (``throughput.networks``), for the inference stage's note.
    """
    from batchclf.jobs import writers
    from batchclf.jobs.rows import BLANK, make_row, labelled_rows, now_iso
    from batchclf.scan import decode, preprocess

    n = len(files)
    if n == 0:
        raise ValueError("no files to measure")
    per_file = 1e6 / n

    datas: list[bytes] = []

    def read_and_hash():
        datas.clear()
        for path in files:
            data, _ = decode.read_hashed(path)  # reads and hashes in one pass, as prepare does
            datas.append(data)

    read_and_hash()  # the page cache is warm for every repeat, as for the job after a listing
    read_us = best_cpu(read_and_hash, repeats) * per_file

    pages: list = []

    def decode_all():
        pages.clear()
        for data in datas:
            pages.extend(decode.decode_bytes(data))

    decode_us = best_cpu(decode_all, repeats) * per_file

    images: list = []
    normalise_us = normalise_cost([page.gray for page in pages], preprocess.normalize_to_bytes, repeats, images) * per_file
    inked = [image for image in images if image is not None]

    # Inference on whole batches (the job pads only its last one): the sample's digits
    # repeated to at least eight batches, so one short batch does not weigh.
    batch = predictor.batch_size
    if inked:
        stack = np.stack(inked)
        reps = max(1, int(np.ceil(8 * batch / len(stack))))
        x = preprocess.mnist_to_input(np.concatenate([stack] * reps)[: max(len(stack), 8 * batch) // batch * batch or batch])
        predictor.predict(x[:batch])
        # One call per batch, as classify scores them: the second look's copies are per batch too.
        inference_per_image = best_cpu(lambda: [predictor.predict(x[s : s + batch]) for s in range(0, len(x), batch)],
                                       repeats) / len(x)
        inference_us = inference_per_image * 1e6 * len(inked) / n
        scores = predictor.score(preprocess.mnist_to_input(stack))
        probabilities = scores.probabilities
        looked = getattr(scores, "looked_again", None)
        looked_share = float(np.mean(looked)) if looked is not None else None
    else:
        inference_us, probabilities, looked_share = 0.0, np.zeros((0, 10), np.float32), None

    # Row + report writing: the row stubs a worker makes, labels per batch, CSV and
    # JSONL lines in blocks as classify writes them, then results.json from the JSONL.
    page_rows = [(path.name, hashlib.sha256(data).hexdigest()) for path, data in zip(files, datas)]

    def write_rows():
        with tempfile.TemporaryDirectory() as tmp:
            csv_path, jsonl_path = Path(tmp) / "r.csv", Path(tmp) / "r.jsonl"
            writer = writers.RowWriter(csv_path, jsonl_path)
            tally = writers.Tally()
            labelled = 0
            bases, blanks = [], []
            for (name, digest), image, page in zip(_per_page(page_rows, pages), images, pages):
                base = make_row(file=name, page=page.index + 1, sha256=digest, width=page.width, height=page.height)
                if image is None:
                    blanks.append({**base, "status": BLANK, "processed_at": now_iso()})
                else:
                    bases.append(base)
            rows = []
            for start in range(0, len(bases), batch):
                chunk = bases[start : start + batch]
                rows.extend(labelled_rows(chunk, probabilities[labelled : labelled + len(chunk)], review_below, predictor.name))
                labelled += len(chunk)
            rows.extend(blanks)
            for start in range(0, len(rows), 512):
                block = rows[start : start + 512]
                for row in block:
                    tally.add(row)
                writer.write(block)
            writer.close()
            writers.write_results_json(Path(tmp) / "results.json", {"files": n, "counts": tally.as_dict()}, jsonl_path)

    rows_us = best_cpu(write_rows, repeats) * per_file

    # Shown apart: pickling a chunk's results in a worker and unpickling them in the main process.
    stubs = [
        (make_row(file=path.name, page=1, sha256="0" * 64, width=page.width, height=page.height), image)
        for path, page, image in zip(_per_page(files, pages), pages, images)
    ]

    def transfer():
        for start in range(0, len(stubs), CHUNK_FILES):
            pickle.loads(pickle.dumps(stubs[start : start + CHUNK_FILES], protocol=pickle.HIGHEST_PROTOCOL))

    transfer_us = best_cpu(transfer, repeats) * per_file

    blank = sum(image is None for image in images)
    table = StageTable(
        case,
        n,
        cores(),
        [
            StageCost("read + hash", read_us, n, "read_hashed"),
            StageCost("decode", decode_us, n, f"decode_bytes, {len(pages)} pages"),
            StageCost("normalise", normalise_us, n, f"normalize_to_bytes, {blank} blank"),
            StageCost("inference", inference_us, n, _inference_note(batch, networks, looked_share)),
            StageCost("row + report writing", rows_us, n, "stubs, labels, CSV, JSONL, JSON"),
        ],
        [StageCost("worker -> main transfer", transfer_us, n, f"pickle, chunks of {CHUNK_FILES}")],
    )
    return table


def _inference_note(batch: int, networks: str, looked_share: float | None) -> str:
    looked = f", {looked_share * 100:.1f}% of digits looked at again" if looked_share is not None else ""
    return f"batch {batch}, all threads; {networks or 'the predictor'}{looked}"


def _per_page(per_file: list, pages: list) -> list:
    """Each page's entry of ``per_file``: a file's pages follow each other, and page index 0 starts a file."""
    out, file_index = [], -1
    for page in pages:
        if page.index == 0:
            file_index += 1
        out.append(per_file[max(file_index, 0)])
    return out
