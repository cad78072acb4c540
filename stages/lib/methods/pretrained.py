"""The control: no fine-tuning; the backbone's embeddings as they come (pretrained or random)."""

from __future__ import annotations

from dataclasses import dataclass

from stages.lib.methods.base import Method, register_method


@dataclass(frozen=True)
class PretrainedParams:
    """`pretrained`: no settings; the section may be `{}`."""


@register_method("pretrained")
class Pretrained(Method):
    """Trains nothing: `train` records the starting weights, the later stages score them."""

    params_type = PretrainedParams
    trains = False
