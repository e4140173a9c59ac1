"""Data sets: MNIST loading, and the realistic-scan and USPS folders used for evaluation."""
