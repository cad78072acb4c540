"""The study's published K-means accuracies (SEED_PROTOCOL.md), to print beside ours."""

from __future__ import annotations

# (dataset, method, shots) -> K-means accuracy; shots 0 = full data.
PUBLISHED: dict[tuple[str, str, int], float] = {
    ("pets", "classification", 0): 0.8897,
    ("pets", "classification", 15): 0.5541,
    ("pets", "triplet", 0): 0.9601,
    ("pets", "triplet", 15): 0.8243,
    ("defungi", "classification", 0): 0.8554,
    ("defungi", "classification", 15): 0.5667,
    ("defungi", "triplet", 0): 0.9743,
    ("defungi", "triplet", 15): 0.6667,
}


def published(dataset: str, method: str, shots: int) -> float | None:
    """The study's number for this run, or None where it published none."""
    return PUBLISHED.get((dataset, method, shots))
