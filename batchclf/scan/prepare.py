"""One input file -> row stubs and model inputs: read, hash, decode, normalise.

This is what the worker processes run.  It never raises for a bad file: the
failure becomes a ``failed`` row with the reason, so a job always finishes.
It imports no TensorFlow, so workers start fast.
"""

from __future__ import annotations

import hashlib
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


def prepare(candidate: Candidate) -> list[Prepared]:
    file = candidate.relative
    if candidate.escaped:
        return [failed(file, "symlink points outside the input folder; not read")]
    try:
        data = decode.read(candidate.path)
    except ImageDecodeError as exc:
        return [failed(file, str(exc))]
    digest = hashlib.sha256(data).hexdigest()
    try:
        pages = decode.decode_bytes(data)
    except ImageDecodeError as exc:
        return [failed(file, str(exc), sha256=digest)]
    prepared = []
    for page in pages:
        base = make_row(file=file, page=page.index + 1, sha256=digest, width=page.width, height=page.height)
        try:
            image = preprocess.normalize_to_bytes(page.gray)
        except Exception as exc:  # a bug in normalisation must not sink the job
            prepared.append(failed(file, f"preprocessing failed: {exc}", sha256=digest, page=page.index + 1))
            continue
        if image is None:
            prepared.append(Prepared({**base, "status": BLANK, "processed_at": now_iso()}, None))
        else:
            prepared.append(Prepared(base, image))
    return prepared


def prepare_many(candidates: list[Candidate]) -> list[Prepared]:
    out = []
    for candidate in candidates:
        try:
            out.extend(prepare(candidate))
        except Exception as exc:  # defensive: one strange file never loses the chunk
            out.append(failed(candidate.relative, f"unexpected error: {exc.__class__.__name__}: {exc}"))
    return out


def failed(file: str, reason: str, **fields) -> Prepared:
    """A file that yields no image: a ``failed`` row with its reason."""
    return Prepared(make_row(file=file, status=FAILED, error=reason, processed_at=now_iso(), **fields), None)
