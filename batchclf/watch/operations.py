"""The daemon's operating settings: metrics file, retention, drift, emptied inbox folders.

One small dataclass the daemon receives.  Until these are declared as
settings (``batchclf/watch/settings.py``), :meth:`Operations.from_options`
reads them from the options object by the names that declaration will
use, so declaring them there is all it takes; every default is "off" or
"keep everything", except the drift warning, which only logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchclf.metrics.drift import DriftSettings
from batchclf.watch.retention import parse_keep

METRICS_EVERY = 5.0  # seconds between metrics file writes at most (and one at exit)
INBOX_FOLDER_GRACE = 60.0  # seconds an emptied inbox folder must stay untouched before it is removed


@dataclass(frozen=True)
class Operations:
    metrics_file: Path | None = None  # Prometheus text file; None: none written
    metrics_every: float = METRICS_EVERY
    keep_processed: int | None = None  # days; None: keep everything
    keep_failed: int | None = None
    drift: DriftSettings = field(default_factory=DriftSettings)
    prune_inbox_folders: bool = True  # only folders the daemon emptied, after the grace period
    inbox_folder_grace: float = INBOX_FOLDER_GRACE

    @classmethod
    def from_options(cls, options) -> "Operations":
        """From the settings of these names on ``options``, when it has them (absent: the defaults)."""
        defaults = DriftSettings()
        get = lambda name, default: default if getattr(options, name, None) is None else getattr(options, name)  # noqa: E731
        metrics_file = getattr(options, "metrics_file", None)
        return cls(
            metrics_file=Path(metrics_file) if metrics_file is not None else None,
            keep_processed=parse_keep(getattr(options, "keep_processed", None), "--keep-processed"),
            keep_failed=parse_keep(getattr(options, "keep_failed", None), "--keep-failed"),
            drift=DriftSettings(
                window=int(get("drift_window", defaults.window)),
                factor=float(get("drift_factor", defaults.factor)),
                margin=float(get("drift_margin", defaults.margin)),
                confidence_drop=float(get("drift_confidence_drop", defaults.confidence_drop)),
            ),
        )
