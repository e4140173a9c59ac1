"""What every classify engine takes and offers (:mod:`batchclf.engines` chooses one by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol


@dataclass(frozen=True)
class EngineSettings:
    """What every engine needs; the ``ray`` fields are ignored by the local engine."""

    model: Path
    device: str = "auto"  # auto|cpu|gpu; under Ray: where the actors predict (gpu when gpus_per_actor > 0)
    batch_size: int | None = None  # None: the device's default (batchclf.model.device.DEFAULT_BATCH)
    review_below: float | None = None  # None: the model card's (or --target-error's)
    target_error: float | None = None  # None: no budget; else the threshold comes from the card's curve
    workers: int | None = None  # decoding processes (local) / CPUs for decoding tasks of a local Ray; None: one per core
    limits: object | None = None  # batchclf.scan.decode.Limits, None: the defaults
    input_scale: float | None = None  # None: the model card's (1.0 without one); 255 for a model trained on raw pixels
    detector: Path | None = None  # the not-a-digit detector (batchclf.model.detector); None: none
    # Ray only
    address: str | None = None  # None: start a private Ray on 127.0.0.1; "auto" or "ray://HOST:PORT": join a cluster
    actors: int | None = None  # labelling actors; None: 1 (local Ray) or one per GPU / per 4 CPUs of the cluster
    gpus_per_actor: float = 0.0


class Engine(Protocol):
    """The interface both engines share."""

    name: str

    def __init__(self, settings: EngineSettings): ...

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc) -> bool: ...

    def rows(self, candidates: Iterable) -> Iterator[dict]:
        """One row per page of each candidate (a failed file: one ``failed`` row), in input order, streamed."""
        ...

    def describe(self) -> dict:
        """Job metadata this engine contributes: ``engine``, ``device``, ``batch_size``, ``workers``, ``review_below``, ``model``..."""
        ...


def package_version(package: str) -> str | None:
    """An installed package's version, without importing it (the driver of a Ray job never imports TensorFlow)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
