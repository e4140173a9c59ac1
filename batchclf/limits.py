"""The bounds of every numeric setting and flag, in one place.

Without an upper bound a typo is a crash, not an error: ``max_batch =
100000000`` allocated 292 GiB before failing, ``--workers 100000`` forks
until the machine stops.  The daemon's settings declaration
(:mod:`batchclf.watch.settings`) and the flags of ``classify``,
``evaluate``, ``predict`` and ``bench`` (:mod:`batchclf.cli.common`) take
their limits from here; the README's table states them.
"""

from __future__ import annotations

MAX_WORKERS = 256  # decode processes: more than any machine has cores, fewer than it can fork
MAX_EPOCHS = 1000  # train --epochs: a typo (10000) would hold the machine for days
MAX_BATCH = 16384  # images per model call: 16384 x 28 x 28 float32 is 51 MB
MAX_PAGES = 100_000  # --max-pages: pages one file may have
MAX_DECISIONS = 1_000_000  # lines of a review sheet's corrections.csv (and a person's rows of a verified.csv)
MAX_FILE_MB = 4096  # --max-file-mb: a file is read into memory whole
MAX_ACTORS = 256  # Ray labelling actors, each holding a model
MAX_GPUS_PER_ACTOR = 64.0
MAX_INPUT_SCALE = 65535.0  # a model trained on raw 16-bit pixels
MAX_SECONDS = 86400.0  # any interval of the daemon (latency, settle, polls, rescans): one day
MAX_DRIFT_WINDOW = 100_000  # rows the drift monitor keeps (two numbers each)
MAX_DRIFT_FACTOR = 100.0  # review share this many times the baseline's: past it, drift would never warn

# --target-error: the share of accepted digits allowed to be wrong.
MIN_TARGET_ERROR = 0.00001
MAX_TARGET_ERROR = 0.5


class Share(float):
    """A share written as a fraction (``0.002``) or a percentage (``0.2%``): ``--target-error 0.2%``."""

    def __new__(cls, value):
        if isinstance(value, str):
            text = value.strip()
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        return super().__new__(cls, value)
