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
from batchclf.watch.retention import Plan, RetentionPolicy, parse_keep, plan

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


def daemon_folders(options) -> tuple[Path, Path, Path, Path]:
    """``(inbox, out, processed, failed)`` as the daemon resolves them (processed/ and failed/ beside the inbox by default)."""
    inbox = Path(options.inbox).resolve()
    processed = Path(options.processed_dir or inbox.parent / "processed").resolve()
    failed = Path(options.failed_dir or inbox.parent / "failed").resolve()
    return inbox, Path(options.out_dir).resolve(), processed, failed


def retention_policy(options, operations: Operations | None = None) -> RetentionPolicy:
    operations = operations if operations is not None else Operations.from_options(options)
    inbox, out_dir, processed, failed = daemon_folders(options)
    return RetentionPolicy(processed, failed, operations.keep_processed, operations.keep_failed, protected=(inbox, out_dir))


def retention_dry_run(options) -> Plan:
    """What retention would remove now, with file counts and sizes (for ``service status``); removes nothing.

    ``Plan.line()`` is the one-line summary; ``Plan.folders`` the detail.
    Days with moves still pending are not left out here (that needs the
    journal), so the line may name a day the daemon would still keep.
    """
    return plan(retention_policy(options), measure=True)
