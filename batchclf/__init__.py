"""batchclf: classify folders of scanned handwritten digits into labelled reports."""

import os

# TensorFlow's C++ log lines below warnings are noise for an operator; real errors
# still surface as Python exceptions.  What it prints before its logging is set
# up ignores this: device.tensorflow() catches that.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

LABEL_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
