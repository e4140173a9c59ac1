"""Classify engines: how discovered files become labelled rows, and the one chooser that picks one by name.

Every engine takes the same :class:`EngineSettings`, is used as a context
manager (it owns whatever it starts: worker processes, a Ray instance) and
offers the same two calls::

    engine_cls = get_engine("ray")            # or "local"
    with engine_cls(EngineSettings(model=path, ...)) as engine:
        for row in engine.rows(discover(paths)):  # rows in the shared schema (batchclf.jobs.rows), input order
            ...
        meta = engine.describe()                  # engine, device, batch_size, workers, review_below, model...

Both engines prepare each file with :func:`batchclf.scan.prepare.prepare_many`
and label it with :func:`batchclf.jobs.rows.labelled_rows`, so the same files
give the same rows (statuses, labels; confidences within float noise) on
either.  The chooser works the way watchdog picks its observer
(``watchdog.observers._get_observer_cls``): a table of names, each imported
only when chosen, so ``--engine local`` never imports Ray and ``--help``
never imports anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol

from batchclf.errors import EngineUnavailableError, UnknownEngineError

RAY_INSTALL_HINT = "--engine ray needs Ray: pip install 'batchclf[ray]'"


@dataclass(frozen=True)
class EngineSettings:
    """What every engine needs; the ``ray`` fields are ignored by the local engine."""

    model: Path
    device: str = "auto"  # auto|cpu|gpu; under Ray: where the actors predict (gpu when gpus_per_actor > 0)
    batch_size: int | None = None  # None: the device's default (batchclf.model.device.DEFAULT_BATCH)
    review_below: float | None = None  # None: the model card's
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


class LocalEngine:
    """Today's engine: spawned worker processes decode, one compiled predictor in this process labels."""

    name = "local"

    def __init__(self, settings: EngineSettings):
        from batchclf.model import card as cards
        from batchclf.model.predictor import Predictor
        from batchclf.engines.local import default_workers

        self.settings = settings
        self.predictor = Predictor(settings.model, device=settings.device, batch_size=settings.batch_size,
                                   input_scale=settings.input_scale, detector=settings.detector)
        self.predictor.warm_up()
        self.review_below = cards.review_below(self.predictor.card, settings.review_below)
        self.workers = default_workers() if settings.workers is None else settings.workers

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def rows(self, candidates: Iterable) -> Iterator[dict]:
        from batchclf.engines.local import classify_stream

        extra = {} if self.settings.limits is None else {"limits": self.settings.limits}
        p = self.predictor
        return classify_stream(candidates, p.score, p.batch_size, self.review_below, p.name, self.workers, **extra)

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": self.predictor.describe(),
            "device": self.predictor.device,
            "batch_size": self.predictor.batch_size,
            "workers": self.workers,
            "review_below": self.review_below,
            "tensorflow": package_version("tensorflow"),
        }


def package_version(package: str) -> str | None:
    """An installed package's version, without importing it (the driver of a Ray job never imports TensorFlow)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# name -> (module, class); imported only when chosen.
_ENGINES = {
    "local": (__name__, "LocalEngine"),
    "ray": ("batchclf.engines.ray", "RayEngine"),
}
ENGINE_NAMES = tuple(_ENGINES)


def get_engine(name: str) -> type:
    """The engine class called ``name`` (``local`` or ``ray``).

    Raises :class:`UnknownEngineError` for another name and
    :class:`EngineUnavailableError` (one line saying what to install) when the
    engine's library is missing.
    """
    try:
        module_name, class_name = _ENGINES[name]
    except KeyError:
        raise UnknownEngineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}") from None
    if name == "ray":
        ray_available()
    return getattr(importlib.import_module(module_name), class_name)


def ray_available() -> None:
    """Raise :class:`EngineUnavailableError` unless Ray with Ray Data is installed.

    Found without importing Ray: how Ray is configured depends on the
    address, and some of it must be set before its first import
    (:mod:`batchclf.engines.ray`).
    """
    try:
        spec = importlib.util.find_spec("ray")
    except (ImportError, ValueError):  # ValueError: a ``ray`` in sys.modules without a spec
        spec = None
    # find_spec("ray.data") would import ray itself: look for the subpackage instead.
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    found = any(os.path.isfile(os.path.join(location, "data", "__init__.py")) for location in locations)
    if not found:
        raise EngineUnavailableError(RAY_INSTALL_HINT)
