"""Building blocks shared by the stages, each importable and testable without DVC."""
