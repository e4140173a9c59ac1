"""The Ray Data engine: the same rows as the local engine, computed on a Ray cluster (or a private local Ray).

The pipeline::

    driver: discover() --blocks of pickled candidates--> object store
    tasks:  prepare_many()  (read, hash, decode, normalise; bad files -> failed rows)
    actors: Labeller        (the model loaded once per actor; GPU actors when asked)
    driver: iter_batches() -> rows, in input order

Discovery and the job folder stay with the driver.  Candidates leave it in
blocks (16, 32, ... up to ``MAX_BLOCK_FILES`` files) as Arrow tables in Ray's
object store, which spills to disk: the driver holds only one object
reference per block, so a 1,000,000-file input costs it about 2,000
references, not a list of a million candidates.  Candidates travel pickled
with absolute paths: names with newlines or bytes that are not UTF-8 arrive
unchanged, and the workers' current folder does not matter.

Fault tolerance: a decoding task whose worker dies is retried by Ray (Ray
Data's default for tasks: without limit); an
actor that dies is restarted (the model loaded again) and its batch retried
(Ray Data's defaults for actor pools: ``max_restarts=-1``,
``max_task_retries=-1``).  A file that kills its decoder twice on a node
becomes a ``failed`` row with the local engine's reason instead of
crashing the job (see :class:`_CrashLedger`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from batchclf.engines import RAY_INSTALL_HINT
from batchclf.engines.base import EngineSettings, package_version
from batchclf.errors import EngineUnavailableError
from batchclf.scan.pool import default_workers

FIRST_BLOCK_FILES = 16  # small first blocks: rows flow soon, and a few hundred files still spread over the CPUs
MAX_BLOCK_FILES = 512  # then growing to this: few object references for a huge input
LOCAL_OBJECT_STORE_BYTES = 1 << 30  # a private Ray's shared-memory store (spills to disk beyond)
CPUS_PER_ACTOR = 1
LABELLER_MEMORY_BYTES = 512 << 20  # reserved per labelling actor (TensorFlow and the model)
CLUSTER_CPUS_PER_ACTOR = 8  # default actor count on a cluster without GPUs: one per this many CPUs
CRASH_REASON = "the decoder crashed on this file (its worker process died)"  # as batchclf.engines.local
DECODER_NICE = 10  # as the local engine's workers: decoders yield the CPU to inference


def _import_ray(local: bool):
    """Import Ray configured for how it will run; set before the first import where Ray reads it then."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if local:
        # Ray replaces a node address of 127.0.0.1 by the machine's outward address (and so listens
        # there) unless "clusters" are off; off, every Ray server of this private instance binds to loopback.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
        import ray.data
        from ray._private import ray_constants
    except ImportError as exc:
        raise EngineUnavailableError(RAY_INSTALL_HINT) from exc
    ray_constants.ENABLE_RAY_CLUSTER = not local  # in case Ray was imported before
    return ray


# --- the driver side ------------------------------------------------------------------------------


def _absolute(candidate):
    """The candidate with absolute paths (``relative`` is unchanged: root, path and base move together)."""
    changes = {
        field.name: Path(os.path.abspath(value))
        for field in dataclasses.fields(candidate)
        if isinstance(value := getattr(candidate, field.name), Path)
    }
    return dataclasses.replace(candidate, **changes)


def listing_blocks(candidates: Iterable, first: int = FIRST_BLOCK_FILES, largest: int = MAX_BLOCK_FILES) -> Iterator:
    """Arrow tables ``(seq, candidate)`` of growing size, streamed from ``candidates`` (lazy: one block in memory)."""
    import pyarrow as pa

    size, seq, block = first, 0, []

    def table():
        return pa.table({
            "seq": pa.array(range(seq - len(block), seq), pa.int64()),
            "candidate": pa.array(block, pa.binary()),
        })

    for candidate in candidates:
        block.append(pickle.dumps(_absolute(candidate), protocol=pickle.HIGHEST_PROTOCOL))
        seq += 1
        if len(block) >= size:
            yield table()
            block, size = [], min(size * 2, largest)
    if block:
        yield table()


class RayEngine:
    """Rows for discovered files, prepared by Ray tasks and labelled by Ray actors."""

    name = "ray"

    def __init__(self, settings: EngineSettings):
        from batchclf.errors import DeviceError
        from batchclf.model import device as devices
        from batchclf.model import trust

        self.settings = settings
        spec = settings.spec
        self.model_path = spec.model
        trust.check_before_load(self.model_path)  # in the driver, in one line: the actors would only fail one by one
        gpus = float(settings.gpus_per_actor or 0)
        if spec.device == "gpu" and gpus == 0:
            gpus = 1.0
        if spec.device == "cpu" and gpus > 0:
            raise DeviceError("--device cpu contradicts --gpus-per-actor > 0")
        if spec.device not in devices.CHOICES:
            devices.select(spec.device)  # raises the usual unknown-device error
        self.gpus_per_actor = gpus
        self.kind = "gpu" if gpus > 0 else "cpu"
        self.device = "/GPU:0" if gpus > 0 else "/CPU:0"  # each actor sees its own GPUs (CUDA_VISIBLE_DEVICES) as GPU:0
        self.batch_size = int(spec.batch_size or devices.DEFAULT_BATCH[self.kind])
        self.review = spec.review()
        self.review_below = self.review["review_below"]
        # What every actor builds its predictor from: resolved here once (device, batch, threshold), so the actors agree.
        self.actor_spec = dataclasses.replace(spec, device=self.kind, batch_size=self.batch_size,
                                              review_below=self.review_below, target_error=None)
        self.model = self.actor_spec.describe()  # the actors' device decides their runtime, not this machine's GPU
        # Shipped to the actors (no shared model folder needed): each model with its card and LiteRT sidecars.
        self._model_files = model_files(self.model_path)
        detector = spec.detector
        self._detector_files = None if detector is None else model_files(Path(detector), detector=True)
        self.address = settings.address or os.environ.get("RAY_ADDRESS") or None
        self.local = self.address is None
        self.ray = None
        self.started = False  # whether this engine started Ray (and so shuts it down)
        self.actors = settings.actors
        self.workers = settings.workers
        self.startup_seconds: float | None = None

    # -- lifetime --

    def __enter__(self) -> "RayEngine":
        self.start()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def start(self) -> None:
        import time

        clock = time.perf_counter()
        ray = self.ray = _import_ray(self.local and not _ray_initialized())
        if ray.is_initialized():
            pass  # the caller's Ray (a test, a notebook, a Ray job's driver): use it, leave it running
        elif self.local:
            workers = self.workers if self.workers is not None else default_workers()
            actors = self.actors if self.actors is not None else 1
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                num_cpus=workers + actors * CPUS_PER_ACTOR,  # the actors' CPUs on top, as the local engine's model thread
                num_gpus=int(np.ceil(actors * self.gpus_per_actor)) if self.gpus_per_actor else None,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                log_to_driver=False,
                configure_logging=False,
            )
            self.started = True
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            self.started = True
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        if self.actors is None:
            if self.local and self.started:
                self.actors = 1
            elif self.gpus_per_actor > 0:
                self.actors = max(1, int(gpus // self.gpus_per_actor))
            else:
                self.actors = max(1, cpus // CLUSTER_CPUS_PER_ACTOR)
        self.workers = max(1, cpus - self.actors * CPUS_PER_ACTOR)  # CPUs left for decoding tasks
        self.startup_seconds = time.perf_counter() - clock

    def close(self) -> None:
        if self.started and self.ray is not None:
            self.ray.shutdown()
            self.started = False

    # -- the job --

    def rows(self, candidates: Iterable) -> Iterator[dict]:
        """Rows in input order, streamed to the driver as the cluster finishes them."""
        if self.ray is None:
            self.start()
        ray = self.ray
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = True  # rows in discovery order, as the local engine gives them
        context.enable_progress_bars = False  # classify draws its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset start/finish notes

        refs = [ray.put(block) for block in listing_blocks(candidates)]
        if not refs:
            return
        token = uuid.uuid4().hex
        ledger = new_ledger_folder()  # the job's private crash-ledger folder (see _CrashLedger), removed with the job
        try:
            model_ref = ray.put((self._model_files, self._detector_files))
            # The memory reservation also keeps Ray Data from fusing decoding into the actors (it fuses a task map
            # into a following actor map when their remote options agree): fused, one actor would decode everything.
            labeller_resources = {"num_cpus": CPUS_PER_ACTOR, "memory": LABELLER_MEMORY_BYTES}
            if self.gpus_per_actor > 0:
                labeller_resources["num_gpus"] = self.gpus_per_actor
            dataset = (
                ray.data.from_arrow_refs(refs)
                .map_batches(
                    prepare_block,
                    batch_format="pyarrow",
                    batch_size=None,  # one task per listing block
                    fn_kwargs={"limits": self.settings.limits, "token": token, "ledger": ledger},
                    num_cpus=1,  # Ray retries a task whose worker died (Ray Data's default: without limit)
                )
                .map_batches(
                    Labeller,
                    batch_format="pyarrow",
                    batch_size=self.batch_size,
                    compute=ActorPoolStrategy(size=self.actors),
                    fn_constructor_kwargs={
                        "spec": self.actor_spec,
                        # By reference, held here for the whole job: an actor restarted late still finds its model.
                        "model": [model_ref],
                    },
                    **labeller_resources,
                )
            )
            del refs  # the dataset holds them now
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
                for text in batch.column("row").to_pylist():
                    yield json.loads(text)
        finally:
            shutil.rmtree(ledger, ignore_errors=True)  # this node's; another node's empty folder stays in its temp folder

    def describe(self) -> dict:
        ray_version = getattr(self.ray, "__version__", None) or package_version("ray")
        return {
            "engine": self.name,
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "review_below": self.review_below,
            "review": self.review,
            "tensorflow": package_version("tensorflow"),
            "ray": {
                "version": ray_version,
                "address": self.address or "local (127.0.0.1, private)",
                "actors": self.actors,
                "gpus_per_actor": self.gpus_per_actor,
                "startup_seconds": round(self.startup_seconds, 3) if self.startup_seconds is not None else None,
            },
        }


def _ray_initialized() -> bool:
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


# --- the worker side --------------------------------------------------------------------------------


def _row_text(row: dict) -> str:
    # ASCII JSON: any string (an error naming a path with surrogate escapes) survives Arrow's UTF-8 columns.
    return json.dumps(row, ensure_ascii=True)


_niced = False


def _nice_once() -> None:
    global _niced
    if not _niced:
        try:
            os.nice(max(0, DECODER_NICE - os.nice(0)))
        except OSError:
            pass
        _niced = True


class LedgerFolderError(RuntimeError):
    """The crash ledger's folder is not this user's private folder: never written into, the block fails instead."""


def new_ledger_folder() -> str:
    """A fresh private folder for one job's crash ledgers (``mkdtemp``: a random name, mode 0700, created atomically)."""
    return tempfile.mkdtemp(prefix="batchclf-ray-ledger-")


def _open_private_folder(folder: str) -> int:
    """A descriptor of ``folder``, created here (0700) if this node lacks it; refused unless it is our own private folder.

    On the driver's node the folder is the driver's ``mkdtemp``; on another
    node of a cluster the first task creates it.  Either way it is opened
    without following a symlink and checked through the open descriptor
    (no window between check and use): a folder another local user created,
    or one others may write into, is refused, never written into.
    """
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LedgerFolderError(f"crash ledger folder {folder} cannot be created: {exc}") from None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LedgerFolderError(f"crash ledger folder {folder} cannot be opened safely (a symlink?): {exc}") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(fd)
        raise LedgerFolderError(
            f"crash ledger folder {folder} is not private (owner uid {info.st_uid}, mode {info.st_mode & 0o777:o}): refused"
        )
    return fd


class _CrashLedger:
    """Which file a decoding task was on when its worker died, kept where the retry finds it.

    Before each file the task writes ``seq deaths`` into a small file in the
    job's private ledger folder (:func:`new_ledger_folder`; no fsync: the
    kernel keeps it when the process dies).  A retry reads it: the file in
    progress has now killed a worker once more.  The first death retries the
    file normally (the kill may have had another cause); a file in progress
    at a second death is not read again but becomes a ``failed`` row, as the
    local engine treats a file that kills a worker when tried alone.  The
    ledger is removed when the block is done.

    Files are opened relative to the folder's descriptor, never through a
    symlink (``O_NOFOLLOW``), and created only when new (``O_EXCL``).
    """

    def __init__(self, folder: str, token: str, first_seq: int):
        self.dir_fd = _open_private_folder(folder)
        self.name = f"{token}-{first_seq}"
        self.suspect, self.deaths = -1, 0
        try:
            seq, deaths = self._previous().split()
            self.suspect, self.deaths = int(seq), int(deaths) + 1
        except (OSError, ValueError):
            pass
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)  # the retry's record starts anew, as a file of its own
        except FileNotFoundError:
            pass
        self.fd = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=self.dir_fd)

    def _previous(self) -> str:
        fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)
        try:
            return os.read(fd, 64).decode("ascii")
        finally:
            os.close(fd)

    def culprit(self, seq: int) -> bool:
        return seq == self.suspect and self.deaths >= 2

    def begin(self, seq: int) -> None:
        deaths = self.deaths if seq == self.suspect else 0
        os.pwrite(self.fd, f"{seq:020d} {deaths:06d}\n".encode(), 0)

    def done(self) -> None:
        os.close(self.fd)
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass
        os.close(self.dir_fd)


class _NoLedger:
    """Without a ledger folder (a direct call): no crash bookkeeping, nothing written anywhere."""

    def culprit(self, seq: int) -> bool:
        return False

    def begin(self, seq: int) -> None:
        pass

    def done(self) -> None:
        pass


def prepare_block(table, limits=None, token: str = "", ledger: str | None = None) -> "object":
    """A Ray Data task: a block of ``(seq, candidate)`` -> ``(seq, row, image)``, one row per prepared page.

    ``ledger``: the job's private crash-ledger folder (:func:`new_ledger_folder`); None keeps no ledger.
    """
    import pyarrow as pa

    from batchclf.scan.prepare import failed, prepare_many

    _nice_once()
    seqs = table.column("seq").to_pylist()
    blobs = table.column("candidate").to_pylist()
    extra = {} if limits is None else {"limits": limits}
    out_seq, out_row, out_image = [], [], []
    record = _CrashLedger(ledger, token, seqs[0]) if ledger is not None and seqs else _NoLedger()
    for seq, blob in zip(seqs, blobs):
        candidate = pickle.loads(blob)
        if record.culprit(seq):
            items = [failed(candidate.relative, CRASH_REASON)]
        else:
            record.begin(seq)
            items = prepare_many([candidate], **extra)
        for item in items:
            out_seq.append(seq)
            out_row.append(_row_text(item.row))
            out_image.append(None if item.image is None else np.ascontiguousarray(item.image, np.uint8).tobytes())
    record.done()
    return pa.table({
        "seq": pa.array(out_seq, pa.int64()),
        "row": pa.array(out_row, pa.string()),
        "image": pa.array(out_image, pa.binary()),
    })


def model_files(path: Path, detector: bool = False) -> list[tuple[str, bytes]]:
    """A model file, then its card and the LiteRT sidecars the card names, as (name, bytes): what an actor needs of it."""
    from batchclf.model import card as cards
    from batchclf.model.lite_runtime import sidecar_names
    from batchclf.paths import card_path

    files = [(path.name, path.read_bytes())]
    card_file = card_path(path)
    if card_file.is_file():
        files.append((card_file.name, card_file.read_bytes()))
        files.extend((name, path.with_name(name).read_bytes()) for name in sidecar_names(cards.read(path, detector=detector))
                     if path.with_name(name).is_file())  # a missing one: the actor's predictor warns and runs TensorFlow
    return files


def write_model_files(folder: Path, files: list[tuple[str, bytes]]) -> Path:
    """The files :func:`model_files` gathered, written into ``folder`` under their plain names; returns the model's path."""
    folder.mkdir(exist_ok=True)
    for name, data in files:
        (folder / Path(name).name).write_bytes(data)
    return folder / Path(files[0][0]).name


class Labeller:
    """A Ray Data actor: builds its predictor once from the driver's spec and the shipped model, then labels batches."""

    def __init__(self, spec, model: list):
        import ray

        model_files, detector_files = ray.get(model[0])  # in a list: Ray hands it over as the reference, not its value

        folder = Path(tempfile.mkdtemp(prefix="batchclf-model-"))
        try:
            model_file = write_model_files(folder, model_files)
            detector_file = None if detector_files is None else write_model_files(folder / "detector", detector_files)
            # The driver resolved the threshold once; the actor's predictor (and its second look) takes it as given.
            self.predictor = dataclasses.replace(spec, model=model_file, detector=detector_file).predictor()
            self.predictor.warm_up()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __call__(self, table):
        import pyarrow as pa

        from batchclf.engines.consume import consume
        from batchclf.scan.prepare import Prepared

        items = [Prepared(json.loads(text), None if image is None else np.frombuffer(image, np.uint8).reshape(28, 28))
                 for text, image in zip(table.column("row").to_pylist(), table.column("image").to_pylist())]
        out = consume(items, self.predictor)
        return pa.table({"seq": table.column("seq"), "row": pa.array([_row_text(row) for row in out], pa.string())})
