"""The timm backbone (its pooled feature is the embedding) and safetensors checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError

WEIGHTS_FILE = "model.safetensors"
META_KEYS = ("model", "image_size", "classes", "leak")  # what the later stages read from meta.json


def build_backbone(name: str, weights: Path | None = None) -> nn.Module:
    """timm model `name` with its classifier removed (`num_classes=0`), from a local weights file.

    Never touches the network: pretrained weights are a file the `weights` stage downloaded.
    """
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise PipelineError(f"model.name {name!r} is not a timm model ({exc}); see timm.list_models()") from None
    if weights is not None:
        state = _read_safetensors(weights)
        state = {k: v for k, v in state.items() if not k.startswith(_classifier_prefixes(model))}
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise PipelineError(
                f"{weights} does not fit model {name}: {len(result.missing_keys)} weights missing "
                f"(first: {result.missing_keys[0]}); check model.name and sources.weights"
            )
    return model


def embedding_size(backbone: nn.Module) -> int:
    """The length of the embedding `backbone` returns (timm, `num_classes=0`): its pooled feature, or for
    models with a layer after the pooling (MobileNetV3, LCNet: `head_hidden_size`) that layer's output."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def input_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) a timm model's pretrained config asks its inputs to be normalised
    with: ImageNet's for `convnext_tiny.fb_in22k` (as the study), CLIP's for a CLIP model, and so on.
    A module without a timm config (a test's toy network) gets ImageNet's."""
    from stages.lib.device import MEAN, STD

    config = getattr(model, "pretrained_cfg", None) or {}
    mean, std = config.get("mean", MEAN), config.get("std", STD)
    if len(mean) != 3 or len(std) != 3:
        raise PipelineError(f"the model's config gives {len(mean)}-channel normalisation; only RGB (3) is supported")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of the removed classifier's weights in a hub checkpoint (e.g. `head.fc.`)."""
    classifier = model.pretrained_cfg.get("classifier", "fc")
    return (f"{classifier}.",)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the stage that writes it (dvc repro)") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise PipelineError(f"{path} is not a readable safetensors file ({exc}); delete it and re-run") from None


def save_checkpoint(folder: Path, backbone: nn.Module, head: nn.Module | None, meta: dict) -> None:
    """Write `model.safetensors` (backbone.*, head.*) and `meta.json` as the folder `folder`,
    atomically: the folder is replaced whole, so weights and meta data always belong together."""
    tensors = {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    if head is not None:
        tensors.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"model": str(meta.get("model", ""))})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_backbone(folder: Path) -> tuple[nn.Module, dict]:
    """The trained backbone from a checkpoint folder, and its meta data."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError:
        raise PipelineError(f"{folder / 'meta.json'} not found; run the train stage first (dvc repro)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{folder / 'meta.json'} is corrupt ({exc}); re-run the train stage") from None
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise PipelineError(f"{folder / 'meta.json'} lacks {', '.join(missing)}; re-run the train stage")
    model = build_backbone(meta["model"])
    state = _read_safetensors(folder / WEIGHTS_FILE)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        model.load_state_dict(backbone_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise PipelineError(
            f"{folder / WEIGHTS_FILE} does not fit model {meta['model']} ({first}); re-run the train stage"
        ) from None
    return model, meta
