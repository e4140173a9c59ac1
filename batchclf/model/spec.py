"""One model spec: everything that says which model runs and how, declared once and turned into a predictor in one place.

``classify`` (both engines and the Ray actors), the daemon, ``model evaluate``
and ``model predict`` all describe the model they want as a :class:`ModelSpec`
and get their :class:`~batchclf.model.predictor.Predictor` from
:meth:`ModelSpec.predictor`; the Ray driver records the same description
(:meth:`ModelSpec.describe`) without starting TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from batchclf.model import card as cards
from batchclf.model import device as devices
from batchclf.model.predictor import (choose_runtime, describe_detector, model_description, second_look_wanted,
                                      sha256_file)

if TYPE_CHECKING:
    from batchclf.model.predictor import Predictor


@dataclass(frozen=True)
class ModelSpec:
    """Which model, on what, and how its rows are judged; ``None`` fields fall back to the model card (or the device)."""

    model: Path
    device: str = "auto"  # auto|cpu|gpu; under Ray: where the actors predict (gpu when gpus_per_actor > 0)
    batch_size: int | None = None  # None: the device's default (batchclf.model.device.DEFAULT_BATCH)
    input_scale: float | None = None  # None: the model card's (1.0 without one); 255 for a model trained on raw pixels
    detector: Path | None = None  # the not-a-digit detector, already resolved (batchclf.paths.detector); None: none
    review_below: float | None = None  # None: the model card's (or --target-error's)
    target_error: float | None = None  # None: no budget; else the threshold comes from the card's curve
    second_look: bool | None = None  # None: as the card says (batchclf.model.second_look)
    # auto: LiteRT sidecars on a CPU when the cards name valid ones, else TensorFlow; tensorflow|litert: forced
    runtime: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "model", Path(self.model))
        if self.detector is not None:
            object.__setattr__(self, "detector", Path(self.detector))

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(field.name for field in fields(cls))

    def predictor(self) -> "Predictor":
        """The one factory: a loaded, compiled predictor for this spec (starts TensorFlow)."""
        from batchclf.model.predictor import Predictor

        return Predictor(self.model, device=self.device, batch_size=self.batch_size, input_scale=self.input_scale,
                         detector=self.detector, second_look=self.second_look, review_below=self.review_below,
                         target_error=self.target_error, runtime=self.runtime)

    def review(self) -> dict:
        """The review threshold as the predictor resolves it (flag > --target-error > card), read without TensorFlow."""
        return cards.review_threshold(cards.read(self.model), self.review_below, self.target_error, self.model.name)

    def describe(self) -> dict:
        """What :meth:`Predictor.describe` records (every job names the exact file it ran), without TensorFlow.

        The runtime is the one the predictor would pick; ``auto`` where a GPU may be there counts as TensorFlow
        (the predictor asks TensorFlow, which this must not start).
        """
        card = cards.read(self.model)
        sha256, detector = sha256_file(self.model), describe_detector(self.detector)
        on_cpu = self.runtime == "litert" or self.device == "cpu" or (self.device == "auto" and not devices.gpu_possible())
        plan = choose_runtime(self.runtime, "cpu" if on_cpu else "gpu", self.model, card, sha256, self.detector, detector)
        return model_description(self.model, card, sha256, cards.input_scale(card, self.input_scale), detector,
                                 second_look_wanted(card, self.second_look), plan.runtime, plan.files)
