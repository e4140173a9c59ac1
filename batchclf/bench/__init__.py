"""Benchmarks: classify throughput and the daemon's latency and burst rate."""
