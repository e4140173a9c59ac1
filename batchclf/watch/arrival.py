"""Files still arriving: a decode failure that a slow writer explains is held and read again, not reported.

The stability tracker takes a file once it has been still for ``--settle``.
A writer that pauses longer than that (a stalled SMB or NFS copy, a scanner
waiting for its next page) leaves a file that looks complete but decodes as
truncated, unrecognised or empty.  Reporting it would give one ``failed``
row per pause, and the move would find a file that changed since it was read.

So such a failure is only a suspicion: the file is *held*, watched again,
and read again once it is still again.  It is reported as failed only when
it stayed unchanged for the whole hold (its writer is gone: the file really
is broken), or after :data:`MAX_HOLDS` changes that left it broken (a
writer that never finishes must not keep it out of the reports for ever).
A file that decodes is reported as usual, once.  Files refused at intake
(outside symlinks, FIFOs, devices) are never held: nothing about them can
change by waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from batchclf.jobs.rows import FAILED
from batchclf.scan.prepare import Prepared

log = logging.getLogger("batchclf.watch")

HOLD_FACTOR = 10  # a held file is failed after this many settles without a change...
HOLD_MIN = 1.0  # ...and never sooner than this (seconds), even with --settle 0
MAX_HOLDS = 20  # changes of one broken file before it is reported anyway

# The reasons a partial file gives (see batchclf.scan.decode): a cut-off image, a header not yet
# written, nothing written yet.  Not "too large", "too many pages", a refused format or a refusal
# at intake: waiting changes none of those.
INCOMPLETE_REASONS = ("corrupt or truncated image data", "not a recognised image format", "empty file")

HOLD, REPORT = "hold", "report"

Identity = tuple[int, int, int | None]  # size, mtime_ns, ctime_ns: the same triple means the same bytes


def hold_seconds(settle: float) -> float:
    """How long a held file must stay unchanged before its failure is reported.

    Also how long a file may keep changing before the log says it is waiting
    for its writer.
    """
    return max(HOLD_FACTOR * settle, HOLD_MIN)


def looks_incomplete(prepared: list[Prepared]) -> bool:
    """Whether a file's rows are the failure a file still being written gives."""
    return any(p.row["status"] == FAILED and (p.row.get("error") or "").startswith(INCOMPLETE_REASONS) for p in prepared)


@dataclass
class _Held:
    identity: Identity  # the file as it was when it last failed
    holds: int  # how many times it was held since it was first found broken


class Arrivals:
    """Which broken files are held, keyed by their inbox-relative name; bounded by the files in the inbox."""

    def __init__(self, settle: float):
        self.hold = hold_seconds(settle)
        self._held: dict[str, _Held] = {}

    def verdict(self, relative: str, identity: Identity, prepared: list[Prepared]) -> str:
        """HOLD (watch it again) or REPORT (decide it now) for a file just prepared."""
        held = self._held.get(relative)
        if not looks_incomplete(prepared):
            self.forget(relative)
            return REPORT
        if held is not None and held.identity == identity:
            self.forget(relative)
            log.info("%s: unchanged for %gs after failing to decode: reported as failed", relative, self.hold)
            return REPORT
        holds = held.holds + 1 if held is not None else 1
        if holds > MAX_HOLDS:
            self.forget(relative)
            log.warning("%s: still failing to decode after %d changes: reported as failed", relative, MAX_HOLDS)
            return REPORT
        self._held[relative] = _Held(identity, holds)
        return HOLD

    def forget(self, relative: str) -> None:
        self._held.pop(relative, None)
