"""The method registry: how a backbone is fine-tuned (or not) before its embeddings are scored.

A method is a `Method` subclass registered by name; its hyperparameters are the params.yaml
section of the same name, typed by its `params_type` dataclass.
"""

from __future__ import annotations

# Importing the modules registers their methods.
from stages.lib.methods import (  # noqa: E402,F401
    classification,
    normsoftmax,
    pretrained,
    supcon,
    triplet,
    triplet_batch_hard,
)
from stages.lib.methods.base import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "register_method"]
