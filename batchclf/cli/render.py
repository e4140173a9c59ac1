"""Terminal output with rich: tables for evaluation, predictions and job counts."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from batchclf.printable import printable

console = Console()

def print_comparison(result: dict, baseline: dict) -> None:
    """The same set scored by two models: the headline figures side by side, then per writer."""
    # Headers given as Text must be Columns (rich's Table takes only str or Column positionally).
    names = [Column(header=Text(printable(Path(r["model"]).name))) for r in (baseline, result)]
    table = Table("", *names, "change", title=Text(f"on {printable(result['data'])}"))
    for key, title in (("accuracy", "accuracy"), ("ok_accuracy", "ok rows right"), ("review_share", "sent to review")):
        old, new = baseline.get(key), result.get(key)
        if old is None or new is None:
            continue
        table.add_row(title, f"{old * 100:.2f}%", f"{new * 100:.2f}%", f"{(new - old) * 100:+.2f}")
    for name, new in (result.get("groups") or {}).items():
        old = baseline["groups"].get(name)
        if old is not None:
            table.add_row(Text(printable(name)), f"{old * 100:.2f}%", f"{new * 100:.2f}%", f"{(new - old) * 100:+.2f}")
    console.print(table)


def print_evaluation(result: dict) -> None:
    console.print(f"[bold]{result['model']}[/bold] on {result['data']}")
    ece = f", ECE {result['ece']:.4f}" if "ece" in result else ""
    console.print(f"accuracy {result['accuracy'] * 100:.2f}% of {result['n']} images{ece}")
    if result.get("ok_accuracy") is not None:
        console.print(
            f"ok rows (confidence >= {result['review_below']:.2f}) {result['ok_accuracy'] * 100:.2f}% right; "
            f"{result['review_share'] * 100:.1f}% sent to review", highlight=False,
        )
    if result.get("not_digit_share") is not None:
        console.print(
            f"not-a-digit detector: {result['not_digit_share'] * 100:.2f}% flagged, "
            f"{result['not_digit_extra_share'] * 100:.2f}% that confidence alone would have passed", highlight=False,
        )
    if result.get("curve"):
        print_curve(result["curve"])
    if result.get("groups"):
        groups = Table("group", "accuracy", title="per writer (first folder)")
        for name, accuracy in result["groups"].items():
            groups.add_row(name, f"{accuracy * 100:.2f}%")
        console.print(groups)
    per_class = Table("class", "accuracy", title="per-class accuracy")
    for label, accuracy in result["per_class"].items():
        per_class.add_row(label, "-" if accuracy is None else f"{accuracy * 100:.2f}%")
    console.print(per_class)
    confusion = Table("true \\ predicted", *[str(k) for k in range(10)], title="confusion matrix")
    for label, counts in enumerate(result["confusion"]):
        confusion.add_row(
            str(label), *[f"[bold]{n}[/bold]" if k == label else (str(n) if n else "[dim]0[/dim]") for k, n in enumerate(counts)]
        )
    console.print(confusion)


# The thresholds a reader compares at a glance; the JSON output has every point.
CURVE_SHOWN = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)


def print_curve(points: list[dict]) -> None:
    """Error among accepted digits against the share accepted: what each review threshold would give."""
    table = Table("review below", "accepted", "error among accepted", "wrong / accepted",
                  title="error vs coverage (choose with --target-error or --review-below)")
    for point in points:
        if round(point["review_below"], 4) in CURVE_SHOWN:
            table.add_row(f"{point['review_below']:g}", f"{point['coverage'] * 100:.1f}%", f"{point['error'] * 100:.2f}%",
                          f"{point.get('wrong', '')} / {point.get('accepted', '')}")
    console.print(table)


def print_unseen(figures: dict) -> None:
    """What leave-writers-out measured: every writer scored by models that never saw them."""
    seen = figures["at_review_below"]
    console.print(f"unseen writers: mean {seen['writers_mean'] * 100:.2f}%, worst {printable(seen['worst_writer'][0])} "
                  f"{seen['worst_writer'][1] * 100:.2f}%, {seen['digits']} digits", highlight=False)
    console.print(f"at review below {seen['review_below']:g}: ok rows {seen['ok_right'] * 100:.2f}% right, "
                  f"{seen['review_share'] * 100:.1f}% sent to review ({seen['flagged'] * 100:.1f}% by the detector "
                  f"at its threshold for 1% of unseen digits)", highlight=False)
    table = Table("writer", "accuracy", title="per unseen writer")
    for name, accuracy in seen["per_writer"].items():
        table.add_row(Text(printable(name)), f"{accuracy * 100:.2f}%")
    console.print(table)
    print_curve(figures["curve"])


def print_digit(digit: np.ndarray) -> None:
    """A 28x28 digit as terminal art, two characters a pixel so it keeps its shape."""
    shades = " .:-=+*#%@"
    for row in np.asarray(digit, np.float32) / max(float(np.max(digit)), 1e-6):
        console.print("".join(shades[int(v * (len(shades) - 1))] * 2 for v in row), highlight=False)


def print_predictions(results: list[dict]) -> None:
    table = Table("file", "page", "label", "confidence", "top 3")
    for r in results:
        if r.get("label") is None:
            table.add_row(r["file"], str(r["page"] or ""), r["status"], "", r.get("error") or "")
            continue
        top = ", ".join(f"{t['label']} {t['confidence']:.3f}" for t in r["top"])
        flag = f" - {r['error']}" if r.get("error") else ""
        table.add_row(r["file"], str(r["page"]), f"{r['label']} ({r['word']}){flag}", f"{r['confidence']:.4f}", top)
    console.print(table)


def print_job_counts(folder: Path) -> None:
    from batchclf.jobs.folder import read_job

    summary = read_job(folder).meta
    err = Console(stderr=True)
    err.print(f"job {summary['job_id']}")
    table = Table("status", "rows")
    for status, n in summary["counts"].items():
        table.add_row(status, str(n))
    err.print(table)
    rate = summary.get("files_per_second")
    err.print(
        f"{summary['files']} files in {summary['seconds']:.1f}s ({rate} files/s) on {summary['device']}, "
        f"batch {summary['batch_size']}, {summary['workers']} workers"
    )


def print_bench(rows: list[dict], machine: str, stages: list[dict] | None = None) -> None:
    table = Table("case", "images", "seconds", "images/s", "x batched", "x naive", title=f"batchclf bench on {machine}")
    for r in rows:
        table.add_row(r["case"], str(r["images"]), f"{r['seconds']:.2f}", f"{r['images_per_s']:.0f}", f"{r['vs_batched']:.2f}", f"{r['vs_naive']:.0f}")
    console.print(table)
    for case in stages or []:
        costs = Table("stage", "core-us per file", "share", "how", title=f"{case['case']}: each stage alone, {case['files']} files")
        for s in case["stages"]:
            costs.add_row(s["stage"], f"{s['core_us_per_file']:,.0f}", f"{s['share'] * 100:.0f}%", Text(s["note"]))
        costs.add_row("sum", f"{case['core_us_per_file']:,.0f}", "100%", "", end_section=True)
        for s in case["not_summed"]:
            costs.add_row(Text(f"({s['stage']})"), f"{s['core_us_per_file']:,.0f}", "", Text(f"{s['note']}; not summed"))
        console.print(costs)
        ratio = f", end to end {case['end_to_end_files_per_s']:,.0f} files/s = {case['vs_ideal']:.2f} of it" if "vs_ideal" in case else ""
        console.print(
            f"ideal = {case['cores']} cores / {case['core_us_per_file']:,.0f} core-us per file = {case['ideal_files_per_s']:,.0f} files/s{ratio}",
            highlight=False, markup=False,
        )


def print_card(model_path: Path, card: dict) -> None:
    """A card's main fields; every text from the card is shown through :func:`printable` (numbers are schema-checked)."""
    test = card.get("mnist_test") or {}
    say = functools.partial(console.print, highlight=False, markup=False)
    say(Text(printable(model_path), style="bold"))
    if not card:
        say("no model card")
        return
    parameters = f"{card['parameters']:,}" if card.get("parameters") else "?"
    flops = f"{card['flops_per_image'] / 1e6:.1f} M" if card.get("flops_per_image") else "?"
    say(f"architecture {printable(card.get('architecture'))}  parameters {parameters}  FLOPs/image {flops}")
    for key in ("created", "parent"):
        if card.get(key):
            say(f"{key} {printable(card[key])}")
    if test.get("accuracy") is not None:
        say(f"MNIST test accuracy {test['accuracy'] * 100:.2f}% on {test.get('n') or '?'} images")
    calibration = card.get("calibration") or {}
    if "temperature" in calibration:
        before = calibration.get("test_ece_before")
        after = calibration.get("test_ece_after")
        ece = f"  test ECE {before:.4f} -> {after:.4f}" if before is not None and after is not None else (
            f"  test ECE {after:.4f}" if after is not None else "")
        say(f"temperature {calibration['temperature']:.3f}{ece}")
    if card.get("parent_mnist_test_accuracy") is not None and test:
        say(f"parent {printable(card.get('parent'))} MNIST test accuracy {card['parent_mnist_test_accuracy'] * 100:.2f}%")


def print_models(entries, folder: Path) -> None:
    if not entries:
        console.print(f"no models in {printable(folder)}", highlight=False, markup=False)
        return
    table = Table("", "model", "architecture", "MNIST test", "trained", "parent", title=Text(f"models in {printable(folder)}"))
    for entry in entries:
        card = entry.card
        accuracy = (card.get("mnist_test") or {}).get("accuracy")
        table.add_row(
            "*" if entry.in_use else "", Text(printable(entry.name)),
            Text(printable(card.get("architecture") or card.get("error") or "?")),
            f"{accuracy * 100:.2f}%" if accuracy else "-", Text(printable(card.get("created") or "-")[:19]),
            Text(printable(card.get("parent") or "-")),
        )
    console.print(table)
    console.print("* in use (batchclf models use NAME switches it)", highlight=False, markup=False)
