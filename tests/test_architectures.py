import numpy as np
import pytest

from batchclf.model import architectures
from batchclf.errors import UnknownArchitectureError
from batchclf.model.flops import flops_per_image


def test_seed_is_the_classic_demo():
    model = architectures.build("seed")
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert [model.layers[0].filters, model.layers[1].filters, model.layers[4].units, model.layers[5].units] == [32, 64, 100, 10]
    assert model.optimizer.__class__.__name__ == "Adadelta"
    assert float(model.optimizer.learning_rate) == pytest.approx(1.0)
    assert architectures.recipe("seed").epochs == 3 and architectures.recipe("seed").batch_size == 128
    # 2 FLOPs per multiply-add: the seed is about 32 MFLOP.
    assert 31e6 < flops_per_image(model) < 33e6


def test_default_costs_at_most_half_the_seed():
    seed, default = architectures.build("seed"), architectures.build("default", steps_total=10)
    assert flops_per_image(default) <= flops_per_image(seed) / 2
    assert flops_per_image(default) <= 16e6


@pytest.mark.parametrize("name", architectures.NAMES)
def test_each_architecture_trains_a_step(name):
    model = architectures.build(name, steps_total=2)
    x = np.random.default_rng(0).random((16, 28, 28, 1)).astype("float32")
    y = np.arange(16) % 10
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x[:2], verbose=0).shape == (2, 10)


def test_unknown_architecture():
    with pytest.raises(UnknownArchitectureError, match="choose one of: seed, default"):
        architectures.build("resnet")
