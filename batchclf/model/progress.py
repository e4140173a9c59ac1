"""A rich progress display for Keras training (epoch, batch, loss, accuracy, ETA)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def keras_callback(epochs: int, steps_per_epoch: int, console: Console | None = None):
    import keras

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=epochs * steps_per_epoch, epoch=1, epochs=epochs, loss=0.0, acc=0.0
            )

        def on_epoch_begin(self, epoch, logs=None):
            self.progress.update(self.task, epoch=epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            self.progress.update(
                self.task, advance=1, loss=float(logs.get("loss", 0.0)), acc=float(logs.get("accuracy", 0.0))
            )

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"{k} {float(v):.4f}" for k, v in logs.items() if k != "learning_rate"]
            self.progress.console.print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(parts))

        def on_train_end(self, logs=None):
            self.progress.stop()

    return RichProgress()
