"""Timed comparisons that back the performance claims (`make bench`, `benchmarks/gpu.sh`)."""
