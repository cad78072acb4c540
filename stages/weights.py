"""weights: the pretrained backbone weights as a local file (`models/pretrained/`), checksummed.

With `model.pretrained: false` nothing is downloaded; the folder records that training starts
from random weights. After this stage nothing in the pipeline uses the network.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import atomic_dir
from stages.lib.errors import PipelineError, stage_main

log = logging.getLogger("stages.weights")

INFO_FILE = "info.json"


def hub_url(model_name: str) -> str:
    """The safetensors file of `model_name`'s pretrained tag on the Hugging Face hub (from timm)."""
    import timm  # imported only here, so that `--help` answers at once

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise PipelineError(
            f"timm knows no hub weights for model.name {model_name!r}; set sources.weights.url "
            "to a safetensors file, or model.pretrained: false"
        )
    return f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors"


def weights_file(folder: Path) -> Path | None:
    """The weights file the `weights` stage left in `folder`, or None for random initialisation."""
    from stages.lib.models import WEIGHTS_FILE

    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{folder / INFO_FILE} not found; run the weights stage first (dvc repro)") from None
    except json.JSONDecodeError:
        raise PipelineError(f"{folder / INFO_FILE} is corrupt; re-run the weights stage") from None
    return folder / WEIGHTS_FILE if info.get("pretrained") else None


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("weights", __doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (models/pretrained)")
    p.add_argument("--cache", type=Path, required=True, help="folder kept between runs for the download")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    model = params.model
    with atomic_dir(args.out) as tmp:
        info: dict = {"model": model.name, "pretrained": model.pretrained}
        if model.pretrained:
            from stages.lib.fetch.downloads import download
            from stages.lib.models import WEIGHTS_FILE, build_backbone

            source = params.sources["weights"]
            url = source.url or hub_url(model.name)
            cached = args.cache / f"{model.name}.safetensors"
            result = download(url, cached, sha256=source.sha256, pin_as="sources.weights.sha256")
            (tmp / WEIGHTS_FILE).write_bytes(cached.read_bytes())
            build_backbone(model.name, tmp / WEIGHTS_FILE)  # fails now, not mid-training, if it does not fit
            info.update(url=url, sha256=result["sha256"])
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("weights for %s: %s", model.name, "pretrained" if model.pretrained else "random initialisation")


if __name__ == "__main__":
    main()
