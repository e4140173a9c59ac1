"""Labelled scans as data: folders of ``DIGIT/`` sub-folders at any depth, and the USPS text format.

A folder holds images under a folder named for their digit, at any depth
(``WRITER/7/scan.png``, ``7/scan.png``); the label is the nearest such
folder, the group (e.g. the writer) the first folder under the root.  Every
image goes through :func:`batchclf.scan.prepare.prepare`, the exact path
prediction takes, so the model trains on what it will be shown.  A USPS
file (``label v1 .. v256`` per line, values in [-1, 1], +1 = ink; gzipped or
not) has no image files to decode: its 16x16 digits go straight into the
same normalisation that ``prepare`` applies after decoding.  Blank and
broken images are counted, never trained on.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batchclf.errors import DataFileError
from batchclf.scan import preprocess


@dataclass
class LabelledSet:
    images: np.ndarray  # (N, 28, 28) uint8, MNIST form
    labels: np.ndarray  # (N,) int64
    groups: np.ndarray  # (N,) str: the first folder under the root (a writer), or the source's name
    sources: list[dict] = field(default_factory=list)  # per source: path, images, skipped, sha256
    origin: dict = field(default_factory=dict)  # for the model card: where these came from, by kind

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> "LabelledSet":
        return LabelledSet(self.images[mask], self.labels[mask], self.groups[mask], self.sources)


def label_from_path(relative: str) -> int | None:
    """The true label of a file in a labelled tree: the nearest folder named 0-9 (``WRITER/7/x.png`` -> 7)."""
    for part in reversed(relative.split("/")[:-1]):
        if len(part) == 1 and part.isdigit():
            return int(part)
    return None


def read_labelled(paths: list[Path], workers: int = 0) -> LabelledSet:
    """Every labelled image under ``paths`` (folders or USPS files), in MNIST form."""
    labelled = concatenate([_read_usps(Path(p)) if Path(p).is_file() else _read_folder(Path(p), workers) for p in paths])
    labelled.origin = {"extra": labelled.sources}
    return labelled


def concatenate(parts: list[LabelledSet]) -> LabelledSet:
    if not parts:
        return LabelledSet(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), np.zeros(0, str))
    return LabelledSet(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.groups for p in parts]),
        [source for p in parts for source in p.sources],
        {key: value for p in parts for key, value in p.origin.items()},
    )


def _read_folder(root: Path, workers: int) -> LabelledSet:
    from batchclf.scan.pool import prepared_stream
    from batchclf.scan.discovery import discover

    if not root.is_dir():
        raise DataFileError(f"labelled scans not found: {root}")
    images, labels, groups = [], [], []
    digest = hashlib.sha256()
    skipped = 0
    for item in prepared_stream(discover([root]), workers):
        relative = item.row["file"]
        label = label_from_path(relative)
        if label is None:
            continue
        if item.row.get("sha256"):
            digest.update(f"{relative}\0{item.row['sha256']}\n".encode())
        if not item.needs_model:
            skipped += 1  # blank or broken: nothing to learn from
            continue
        images.append(item.image)
        labels.append(label)
        groups.append(relative.split("/")[0] if "/" in relative.split("/", 1)[-1] else root.name)
    if not images:
        raise DataFileError(f"{root}: no labelled images (expected DIGIT/ folders, e.g. WRITER/7/scan.png)")
    return LabelledSet(
        np.stack(images), np.asarray(labels, np.int64), np.asarray(groups),
        [{"path": str(root), "images": len(images), "skipped": skipped, "sha256": digest.hexdigest()}],
    )


def _read_usps(path: Path) -> LabelledSet:
    from batchclf.datasets.usps import read_usps

    try:
        raw, labels = read_usps(path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: not a USPS digit file ({exc})") from None
    images, kept = [], []
    for index, gray in enumerate(raw):
        image = preprocess.normalize_to_bytes(gray)
        if image is not None:
            images.append(image)
            kept.append(index)
    return LabelledSet(
        np.stack(images), labels[kept].astype(np.int64), np.full(len(kept), path.name),
        [{"path": str(path), "images": len(kept), "skipped": len(raw) - len(kept), "sha256": _file_sha256(path)}],
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
