"""Both classify engines on the same realistic scans, in one run: files/s, start-up, peak memory.

Each run is a fresh child process (``python -m batchclf.bench.engines --one ENGINE ...``), so neither engine
inherits the other's TensorFlow or Ray.  The parent samples the child's whole process tree every
``SAMPLE_SECONDS`` (for Ray: the driver, GCS, raylet and every worker and actor, all descendants of the
driver when it starts its own Ray): the peak of the summed RSS, and of the summed PSS (shared pages such as
the object store and TensorFlow's libraries counted once, not once per process).  Runs of the two engines
alternate when repeated.

    python -m batchclf.bench.engines --n 10000 [--repeat 1] [--data ../shared/data/mnist] [--scans DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.2
ENGINES = ("local", "ray")
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def write_scans(folder: Path, n: int, data: Path | None) -> Path:
    """``n`` realistic scans (``batchclf.datasets.synthetic``) from MNIST test digits, or from synthetic bars without MNIST."""
    from batchclf.bench.common import sample_digits
    from batchclf.datasets import synthetic

    folder = Path(folder)
    if data is not None and (Path(data) / "mnist.npz").is_file():
        from batchclf.datasets.mnist import load

        dataset = load(Path(data) / "mnist.npz")
        synthetic.write_labelled_folders(dataset.x_test, dataset.y_test, folder, n, seed=0)
    else:
        digits, labels = sample_digits(n, None)
        synthetic.write_scans(digits, labels, folder, seed=0)
    return folder


# --- one run, in a child process ----------------------------------------------------------------------


def run_one(engine_name: str, scans: Path, model: Path, settings: dict) -> dict:
    """Classify ``scans`` with one engine; the timings of its phases (printed as JSON by ``--one``)."""
    from batchclf.engines import get_engine
    from batchclf.engines.base import EngineSettings
    from batchclf.scan.discovery import discover

    clock = time.perf_counter()
    engine = get_engine(engine_name)(EngineSettings.of(model=model, **settings))
    engine.__enter__()
    try:
        started = time.perf_counter()
        first = None
        rows = files = 0
        statuses: dict[str, int] = {}
        for row in engine.rows(discover([scans])):
            if first is None:
                first = time.perf_counter()
            rows += 1
            files += row.get("page") in (None, 1)
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        finished = time.perf_counter()
        meta = engine.describe()
    finally:
        engine.__exit__(None, None, None)
    closed = time.perf_counter()
    return {
        "engine": engine_name,
        "files": files,
        "rows": rows,
        "statuses": statuses,
        "startup_s": round(started - clock, 3),  # model load and warm-up (local) / ray.init (ray)
        "first_row_s": round((first or finished) - started, 3),  # worker spawn / actors loading the model, first batch
        "rows_s": round(finished - started, 3),
        "shutdown_s": round(closed - finished, 3),
        "total_s": round(closed - clock, 3),
        "workers": meta.get("workers"),
        "actors": (meta.get("ray") or {}).get("actors"),
    }


# --- the parent: memory of the child's process tree ---------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    seen, stack = [], [pid]
    while stack:
        current = stack.pop()
        seen.append(current)
        stack.extend(_children(current))
    return seen


def _memory_kb(pid: int) -> tuple[int, int]:
    """``(rss, pss)`` in kB of one process (``smaps_rollup``); zeros if it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Peak summed RSS and PSS of a process and all its descendants."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_rss_kb, self.peak_pss_kb, self.peak_processes = pid, 0, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = _tree(self.pid)
            sizes = [_memory_kb(pid) for pid in pids]
            self.peak_rss_kb = max(self.peak_rss_kb, sum(rss for rss, _ in sizes))
            self.peak_pss_kb = max(self.peak_pss_kb, sum(pss for _, pss in sizes))
            self.peak_processes = max(self.peak_processes, len(pids))
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._done.set()
        self.join()


def measure(engine_name: str, scans: Path, model: Path, settings: dict) -> dict:
    """One run of ``engine_name`` in a child process, with its tree's peak memory."""
    command = [sys.executable, "-m", "batchclf.bench.engines", "--one", engine_name, str(scans), str(model), json.dumps(settings)]
    clock = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(child.pid)
    sampler.start()
    out, _ = child.communicate()
    sampler.stop()
    wall = time.perf_counter() - clock
    if child.returncode != 0:
        raise RuntimeError(f"{engine_name} run failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(
        wall_s=round(wall, 3),  # including the interpreter's own start and imports
        files_per_s=round(result["files"] / result["total_s"], 1),
        steady_files_per_s=round(result["files"] / max(1e-9, result["rows_s"] - result["first_row_s"]), 1),
        peak_rss_mb=round(sampler.peak_rss_kb / 1024),
        peak_pss_mb=round(sampler.peak_pss_kb / 1024),
        peak_processes=sampler.peak_processes,
    )
    return result


def compare(n: int, model: Path, scans: Path | None = None, data: Path | None = DEFAULT_DATA, repeat: int = 1,
            settings: dict | None = None) -> dict:
    """Write (or reuse) ``n`` scans, then run local, ray, local, ray... ``repeat`` times each; figures and the payoff arithmetic."""
    settings = {"device": "cpu", **(settings or {})}
    with tempfile.TemporaryDirectory(prefix="batchclf-bench-engines-") as scratch:
        if scans is None:
            scans = write_scans(Path(scratch) / "scans", n, data)
        runs = [measure(name, scans, model, settings) for _ in range(repeat) for name in ENGINES]
    return {"n": n, "runs": runs, "payoff": payoff(runs)}


def payoff(runs: list[dict], nodes=(1, 2, 4, 8, 16)) -> dict:
    """From which input size Ray on k nodes like this one beats the local engine on one.

    Each engine costs ``fixed + N * per_file``: fixed = everything before the first row (start-up, worker
    spawn / actors loading the model) plus shutdown; per_file from the rest of the run.  Ray on k nodes
    divides its per-file cost by k (decoding dominates and spreads; one labelling actor per node), so it
    pays off once ``N > (fixed_ray - fixed_local) / (per_file_local - per_file_ray / k)``.
    """
    def costs(name):
        mine = [run for run in runs if run["engine"] == name]
        fixed = sum(run["startup_s"] + run["first_row_s"] + run["shutdown_s"] for run in mine) / len(mine)
        per_file = sum((run["rows_s"] - run["first_row_s"]) / run["files"] for run in mine) / len(mine)
        return fixed, per_file

    (fixed_local, per_local), (fixed_ray, per_ray) = costs("local"), costs("ray")
    out = {
        "fixed_s": {"local": round(fixed_local, 2), "ray": round(fixed_ray, 2)},
        "per_file_ms": {"local": round(per_local * 1e3, 3), "ray": round(per_ray * 1e3, 3)},
        "break_even_files": {},
    }
    for k in nodes:
        gain = per_local - per_ray / k
        out["break_even_files"][k] = round(max(0.0, fixed_ray - fixed_local) / gain) if gain > 0 else None
    return out


def print_table(result: dict) -> None:
    print(f"{result['n']} realistic scans")
    print(f"{'engine':<7} {'files/s':>8} {'steady':>8} {'startup s':>10} {'1st row s':>10} {'total s':>8} {'peak RSS MB':>12} {'peak PSS MB':>12} {'procs':>6}")
    for run in result["runs"]:
        print(f"{run['engine']:<7} {run['files_per_s']:>8} {run['steady_files_per_s']:>8} {run['startup_s']:>10} {run['first_row_s']:>10} "
              f"{run['total_s']:>8} {run['peak_rss_mb']:>12} {run['peak_pss_mb']:>12} {run['peak_processes']:>6}")
    pay = result["payoff"]
    print(f"fixed cost s: {pay['fixed_s']}, per file ms: {pay['per_file_ms']}")
    for k, files in pay["break_even_files"].items():
        print(f"  ray on {k:>2} node(s) like this one beats local on one from {files if files is not None else 'never'} files")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "SCANS", "MODEL", "SETTINGS_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST folder (mnist.npz) for realistic digits")
    parser.add_argument("--scans", type=Path, default=None, help="reuse a folder of scans instead of writing N")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        engine, scans, model, settings = args.one
        print(json.dumps(run_one(engine, Path(scans), Path(model), json.loads(settings))))
        return
    from batchclf.paths import default_model

    model = args.model or default_model()
    result = compare(args.n, model, scans=args.scans, data=args.data, repeat=args.repeat)
    result["command"] = "python -m batchclf.bench.engines " + " ".join(argv if argv is not None else sys.argv[1:])
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
