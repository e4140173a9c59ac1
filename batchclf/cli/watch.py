"""``watch``: the inbox daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from batchclf.cli.common import Device, Home, Model, ReviewBelow, Workers, friendly_errors, model_path


@friendly_errors
def watch(
    inbox: Annotated[Optional[Path], typer.Argument(help="Folder to watch (default: inbox/).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the daily job folders and the journal (default: jobs/).")] = None,
    model: Model = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Send a batch to the model at this many files...")] = 64,
    max_latency: Annotated[float, typer.Option("--max-latency", min=0.0, help="...or when the oldest file has waited this long (s).")] = 0.5,
    settle: Annotated[float, typer.Option("--settle", min=0.0, help="A file is taken after this long with no change (s).")] = 1.0,
    polling: Annotated[bool, typer.Option("--polling", help="Poll instead of inotify (automatic on NFS/SMB/FUSE).")] = False,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.05, help="Seconds between polls.")] = 1.0,
    rescan: Annotated[float, typer.Option("--rescan", min=0.1, help="Seconds between full rescans that catch lost events.")] = 60.0,
    oneshot: Annotated[bool, typer.Option("--oneshot", help="Process what is in the inbox now, then exit.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Leave files in the inbox (the journal prevents reprocessing).")] = False,
    processed: Annotated[
        Optional[Path], typer.Option("--processed", help="Where reported files go (default: processed/ beside the inbox).")
    ] = None,
    failed: Annotated[Optional[Path], typer.Option("--failed", help="Where broken files go (default: failed/ beside the inbox).")] = None,
    workers: Workers = None,
    review_below: ReviewBelow = None,
    device: Device = "auto",
    home: Home = None,
):
    """Watch an inbox folder and classify every file that lands in it, exactly once."""
    import logging
    import signal

    from batchclf import paths as locations
    from batchclf.watch.daemon import Daemon, WatchOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = WatchOptions(
        inbox=inbox or locations.inbox_dir(home), out_dir=out or locations.jobs_dir(home), model=model_path(model, home),
        max_batch=max_batch, max_latency=max_latency, settle=settle, polling=polling, poll_interval=poll_interval,
        rescan_interval=rescan, oneshot=oneshot, keep=keep, processed_dir=processed, failed_dir=failed,
        workers=workers, review_below=review_below, device=device,
    )
    daemon = Daemon(options)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop(0))
    signal.signal(signal.SIGINT, lambda *_: daemon.stop(130))
    raise typer.Exit(daemon.run())
