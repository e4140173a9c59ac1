"""The model: architectures, training, calibration, cards, loading and prediction, evaluation."""
