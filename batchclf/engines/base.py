"""What every classify engine takes and offers (:mod:`batchclf.engines` chooses one by name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

from batchclf.model.spec import ModelSpec


@dataclass(frozen=True)
class EngineSettings:
    """What every engine needs: the model (one :class:`ModelSpec`) and how to run it; ``ray`` fields are ignored by the local engine."""

    spec: ModelSpec
    workers: int | None = None  # decoding processes (local) / CPUs for decoding tasks of a local Ray; None: one per core
    limits: object | None = None  # batchclf.scan.decode.Limits, None: the defaults
    # Ray only
    address: str | None = None  # None: start a private Ray on 127.0.0.1; "auto" or "ray://HOST:PORT": join a cluster
    actors: int | None = None  # labelling actors; None: 1 (local Ray) or one per GPU / per 8 CPUs of the cluster (ray.CLUSTER_CPUS_PER_ACTOR)
    gpus_per_actor: float = 0.0

    @classmethod
    def of(cls, **options) -> "EngineSettings":
        """Settings from one flat set of options (a bench's or a test's): the model's go to the spec, the rest here."""
        model_fields = ModelSpec.field_names()
        spec = ModelSpec(**{name: value for name, value in options.items() if name in model_fields})
        return cls(spec, **{name: value for name, value in options.items() if name not in model_fields})


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
