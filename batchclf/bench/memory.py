"""Peak memory of a command and every process it starts: ``python -m batchclf.bench.memory COMMAND...``.

Samples the summed RSS of the command's process tree (read from ``/proc``)
every 0.2 s, and prints the peak and the level at a quarter, half, three
quarters and 95% of the run (the very last samples catch the processes
exiting), so memory that grows with the number of files shows as a rising
line.  Linux only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

SAMPLE_EVERY = 0.2


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
            children.setdefault(parent, []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(command: list[str]) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    while proc.poll() is None:
        samples.append((time.monotonic() - started, sum(rss_bytes(pid) for pid in process_tree(proc.pid))))
        time.sleep(SAMPLE_EVERY)
    levels = {f"{share:.0%}": round(samples[int(share * (len(samples) - 1))][1] / 1e6) for share in (0.25, 0.5, 0.75, 0.95)} if samples else {}
    return {
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(max((total for _, total in samples), default=0) / 1e6),
        "rss_mb_at": levels,
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m batchclf.bench.memory COMMAND [ARGS...]")
    print(measure(sys.argv[1:]))
