"""batchclf: classify folders of scanned handwritten digits into labelled reports."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) is noise
# for an operator; real errors still surface as Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

LABEL_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
