"""From an input file to model input: finding files, decoding, MNIST-style preprocessing."""
