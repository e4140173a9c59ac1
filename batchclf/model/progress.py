"""A rich progress display for Keras training (epoch, batch, loss, accuracy, ETA)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def figures(logs: dict | None) -> str:
    """What a batch's logs say, as the bar shows it: ``loss 0.1234 acc 0.9876``, only what was measured.

    A model compiled without an accuracy metric (a fine-tune) logs none: it
    is left out rather than shown as ``acc 0.0000``; before the first batch
    nothing is shown.
    """
    logs = logs or {}
    parts = [f"{label} {float(logs[key]):.4f}" for key, label in (("loss", "loss"), ("accuracy", "acc")) if key in logs]
    return " ".join(parts)


def keras_callback(epochs: int, steps_per_epoch: int, console: Console | None = None):
    import keras

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=epochs * steps_per_epoch, epoch=1, epochs=epochs, figures="")

        def on_epoch_begin(self, epoch, logs=None):
            self.progress.update(self.task, epoch=epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            self.progress.update(self.task, advance=1, figures=figures(logs))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"{k} {float(v):.4f}" for k, v in logs.items() if k != "learning_rate"]
            self.progress.console.print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(parts))

        def on_train_end(self, logs=None):
            self.progress.stop()

    return RichProgress()
