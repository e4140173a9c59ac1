"""The model architectures, by name.

``seed`` is the classic Keras MNIST demo, kept as a baseline.  ``default`` is
ours: conv-BN-ReLU blocks that downsample early with strided convolutions so
it costs less than half the seed's FLOPs per image while reaching higher
accuracy when trained with :mod:`batchclf.model.augment`.

Only stock Keras layers are used so models load with ``safe_mode=True`` and no
custom objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from batchclf.errors import UnknownArchitectureError


@dataclass(frozen=True)
class Recipe:
    """How an architecture is trained when the user does not override it."""

    epochs: int
    batch_size: int
    augment: bool
    description: str
    continental_ones: float = 0.0  # share of training ones given the European up-stroke (batchclf.model.styles)


def _seed_model(seed: int):
    import keras
    from keras import layers

    init = keras.initializers.GlorotUniform(seed=seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=init),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(100, activation="relu", kernel_initializer=init),
            layers.Dense(10, activation="softmax", kernel_initializer=init),
        ],
        name="seed",
    )
    # Keras 2's Adadelta default learning rate was 1.0; Keras 3 changed it to 0.001.
    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _default_model(seed: int, steps_total: int = 1):
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)

    def conv(x, filters, kernel=3, strides=1, padding="valid"):
        x = layers.Conv2D(
            filters, kernel, strides=strides, padding=padding, use_bias=False, kernel_initializer=init
        )(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((28, 28, 1))
    x = conv(inputs, 16)  # 26
    x = conv(x, 16)  # 24
    x = conv(x, 32, strides=2, padding="same")  # 12
    x = layers.Dropout(0.2, seed=seed)(x)
    x = conv(x, 64)  # 10
    x = conv(x, 64)  # 8
    x = conv(x, 64, strides=2, padding="same")  # 4
    x = layers.Dropout(0.2, seed=seed)(x)
    x = conv(x, 256, kernel=4)  # 1
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3, seed=seed)(x)
    outputs = layers.Dense(10, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    model = keras.Model(inputs, outputs, name="default")
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, int(steps_total * 0.95)),
        warmup_target=3e-3, warmup_steps=max(1, int(steps_total * 0.05)), alpha=0.01,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


_BUILDERS: dict[str, tuple[Callable, Recipe]] = {
    "seed": (
        lambda seed, steps_total: _seed_model(seed),
        Recipe(epochs=3, batch_size=128, augment=False, description="classic Keras MNIST demo"),
    ),
    "default": (
        _default_model,
        Recipe(
            epochs=20,
            batch_size=128,
            augment=True,
            description="strided conv-BN-ReLU net, cosine Adam, scan augmentation, continental ones",
            continental_ones=0.4,
        ),
    ),
}

NAMES = tuple(_BUILDERS)


def recipe(name: str) -> Recipe:
    return _lookup(name)[1]


def build(name: str, seed: int = 1, steps_total: int = 1):
    """A compiled Keras model; ``steps_total`` sizes learning-rate schedules."""
    return _lookup(name)[0](seed, steps_total)


def _lookup(name: str):
    try:
        return _BUILDERS[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; choose one of: {', '.join(NAMES)}"
        ) from None
