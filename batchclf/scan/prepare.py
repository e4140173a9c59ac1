"""One input file -> row stubs and model inputs: read and hash, decode page by page, normalise.

This is what the worker processes run.  It never raises for a bad file: the
failure becomes a ``failed`` row with the reason, so a job always finishes.
It imports no TensorFlow, so workers start fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batchclf.scan import decode
from batchclf.scan import preprocess
from batchclf.scan.discovery import Candidate
from batchclf.errors import ImageDecodeError
from batchclf.jobs.rows import BLANK, FAILED, make_row, now_iso


@dataclass
class Prepared:
    row: dict  # every column known before the model runs
    image: np.ndarray | None  # (28, 28) uint8 MNIST-form when the model must label it (4x less to pickle)

    @property
    def needs_model(self) -> bool:
        return self.image is not None


def prepare(candidate: Candidate, limits: decode.Limits = decode.DEFAULT_LIMITS) -> list[Prepared]:
    file = candidate.relative
    if candidate.escaped:
        return [failed(file, "symlink points outside the input folder; not read")]
    if candidate.unreadable:
        return [failed(file, candidate.unreadable)]
    try:
        data, digest = decode.read_hashed(candidate.path, limits.max_bytes)
    except ImageDecodeError as exc:
        return [failed(file, str(exc))]
    prepared = []
    try:
        # One page at a time: only its 28x28 outlives it, so a many-page TIFF costs one page of memory.
        for page in decode.iter_pages(data, limits):
            prepared.append(_prepare_page(file, digest, page))
    except ImageDecodeError as exc:
        # After good pages, the row names the page that failed; before any, it stands for the file.
        prepared.append(failed(file, str(exc), sha256=digest, page=len(prepared) + 1 if prepared else None))
    return prepared


def _prepare_page(file: str, digest: str, page: decode.Page) -> Prepared:
    number = page.index + 1
    base = make_row(file=file, page=number, sha256=digest, width=page.width, height=page.height)
    try:
        image = preprocess.normalize_to_bytes(page.gray)
    except Exception as exc:  # a bug in normalisation must not sink the job
        return failed(file, f"preprocessing failed: {exc}", sha256=digest, page=number)
    if image is None:
        return Prepared({**base, "status": BLANK, "processed_at": now_iso()}, None)
    return Prepared(base, image)


def prepare_many(candidates: list[Candidate], limits: decode.Limits = decode.DEFAULT_LIMITS) -> list[Prepared]:
    out = []
    for candidate in candidates:
        try:
            out.extend(prepare(candidate, limits))
        except Exception as exc:  # defensive: one strange file never loses the chunk
            out.append(failed(candidate.relative, f"unexpected error: {exc.__class__.__name__}: {exc}"))
    return out


def warm_up() -> None:
    """Decode and normalise one small made-up page, so what decoding loads lazily (Pillow's format plugins,
    OpenCV) is loaded now: a worker started ahead of time then takes its first real chunk at full speed."""
    import io

    from PIL import Image

    page = Image.new("L", (64, 64), 255)
    page.paste(0, (28, 12, 36, 52))  # a stroke, so normalising takes its whole path (a blank page stops early)
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    for decoded in decode.iter_pages(buffer.getvalue()):
        preprocess.normalize_to_bytes(decoded.gray)


def failed(file: str, reason: str, **fields) -> Prepared:
    """A file that yields no image: a ``failed`` row with its reason."""
    return Prepared(make_row(file=file, status=FAILED, error=reason, processed_at=now_iso(), **fields), None)
