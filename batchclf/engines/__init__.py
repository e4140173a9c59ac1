"""Classify engines: how discovered files become labelled rows, and the one chooser that picks one by name.

Every engine takes the same :class:`EngineSettings`, is used as a context
manager (it owns whatever it starts: worker processes, a Ray instance) and
offers the same two calls::

    engine_cls = get_engine("ray")            # or "local"
    with engine_cls(EngineSettings(ModelSpec(path, ...), workers=...)) as engine:
        for row in engine.rows(discover(paths)):  # rows in the shared schema (batchclf.jobs.rows), input order
            ...
        meta = engine.describe()                  # engine, device, batch_size, workers, review_below, model...

Both engines prepare each file with :func:`batchclf.scan.prepare.prepare_many`
and finish its rows with :func:`batchclf.engines.consume.consume` (as the
daemon does), the model built by :meth:`batchclf.model.spec.ModelSpec.predictor`, so the same files
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

from batchclf.errors import EngineUnavailableError, UnknownEngineError

RAY_INSTALL_HINT = "--engine ray needs Ray: pip install 'batchclf[ray]'"


# name -> (module, class); imported only when chosen.
_ENGINES = {
    "local": ("batchclf.engines.local", "LocalEngine"),
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
