"""`make demo`: the whole pipeline through DVC on scikit-learn's digits, offline, on CPU.

`make demo ARGS="-S shots=15"` runs a variation (any `-S key=value`, as `dvc exp run` takes them).
Every setting is checked before anything is touched: a typo gets the project's one line naming the
accepted keys or values, and nothing is lost. Then `params.yaml` is set to the committed study
settings plus the demo's overrides (below) plus yours, `dvc repro` runs what changed, and the
workspace is recorded as a DVC experiment: `demo`, or `demo-<key><value>...` for a variation, so
`dvc exp diff demo demo-shots15` compares them and `dvc exp apply demo` brings the demo back.
`params.yaml` keeps the demo's settings afterwards, so `dvc metrics show`, `dvc exp show` and
`dvc plots show` describe the demo; `git checkout params.yaml` returns to the study's.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own stages/, whichever venv runs this

OVERRIDES = [
    "datasets=[digits]",
    "split.source=generated",  # the study's own lists exist only for pets and DeFungi
    "methods=[pretrained,classification,triplet]",
    "model.name=test_convnext",  # timm's 0.2M-parameter ConvNeXt for tests
    "model.pretrained=false",
    "model.image_size=32",
    "train.device=cpu",
    "train.epochs=12",
    "train.lr=0.002",  # from scratch, so far above the study's 5e-5 for fine-tuning
    "train.warmup_epochs=1",
    "train.cosine_t_max=12",
    "train.eta_min=1e-5",
    "classification.batch_size=64",
    "triplet.batch_size=32",
]
USAGE = 'make demo [ARGS="-S key=value ... [-n NAME]"]'


class DemoError(Exception):
    """A problem the user can fix, printed as one line."""


def git(*args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise DemoError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def parse_args(argv: list[str]) -> tuple[list[str], str | None]:
    """The `-S key=value` overrides and the `-n NAME` of ARGS."""
    overrides, name, items = [], None, list(argv)
    while items:
        flag = items.pop(0)
        if flag in ("-S", "--set-param", "-n", "--name") and not items:
            raise DemoError(f"{flag} needs a value; usage: {USAGE}")
        if flag in ("-S", "--set-param"):
            overrides.append(items.pop(0))
        elif flag in ("-n", "--name"):
            name = items.pop(0)
        else:
            raise DemoError(f"unknown argument {flag!r}; usage: {USAGE}")
    for item in overrides:
        if not re.fullmatch(r"[A-Za-z_][\w.]*=.*", item, flags=re.S):
            raise DemoError(f"-S {item!r} is not key=value (e.g. -S shots=15); usage: {USAGE}")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise DemoError(f"-n {name!r}: an experiment name is letters, digits, '.', '_' and '-'")
    return overrides, name


def apply_override(data: dict, item: str) -> None:
    """Set `key.path=value` in `data` (the value read as YAML, as DVC's -S reads it; new keys
    allowed, so that validation names them with the accepted ones)."""
    import yaml

    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
        value = float(value)  # 1e-5: a number to DVC's -S, a string to YAML 1.1
    *parents, last = key.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def experiment_name(overrides: list[str]) -> str:
    """`demo`, or `demo-` and the overrides in short (`-S shots=15` -> `demo-shots15`)."""
    parts = []
    for item in overrides:
        key, _, value = item.partition("=")
        parts.append(key.split(".")[-1] + re.sub(r"[^A-Za-z0-9.]+", "", value))
    return "-".join(["demo", *parts])[:60].rstrip("-.") or "demo"


def unrecorded_edits() -> bool:
    """Whether params.yaml holds changes that neither HEAD nor any DVC experiment recorded."""
    current = git("hash-object", "params.yaml").strip()
    commits = ["HEAD", *git("for-each-ref", "--format=%(objectname)", "refs/exps").split()]
    query = "".join(f"{c}:params.yaml\n" for c in commits)
    listed = subprocess.run(["git", "cat-file", "--batch-check=%(objectname)"], cwd=ROOT, input=query,
                            capture_output=True, text=True).stdout.split()
    return current not in listed


def _float(value: float) -> str:
    """A float as YAML 1.1 readers (PyYAML) read back as a float: 1e-05 -> 1.0e-05."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def demo_params_text(committed: str, overrides: list[str]) -> tuple[str, dict]:
    """The committed params.yaml with `overrides` set (comments and layout kept) and its values."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML()
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    rt.representer.add_representer(float, lambda r, v: r.represent_scalar("tag:yaml.org,2002:float", _float(v)))
    data = rt.load(committed)
    plain: dict[str, Any] = json.loads(json.dumps(data))
    for item in overrides:
        apply_override(plain, item)

    def assign(node: CommentedMap, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(node.get(key), CommentedMap):
                assign(node[key], value)
            elif isinstance(value, list):
                if isinstance(node.get(key), list) and list(node[key]) == value:
                    continue
                seq = CommentedSeq(value)
                seq.fa.set_flow_style()
                node[key] = seq
            elif node.get(key) != value or isinstance(node.get(key), bool) != isinstance(value, bool):
                node[key] = value

    assign(data, plain)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue(), plain


def run_dvc(*args: str) -> int:
    """Run dvc in its own process group; Ctrl-C or SIGTERM here reaches it as Ctrl-C, so the stage
    running keeps what it finished (training saves its last epoch), and this waits for it."""
    proc = subprocess.Popen(["dvc", *args], cwd=ROOT, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 + received[0] if received else code


def main(argv: list[str]) -> int:
    if shutil.which("dvc") is None:
        raise DemoError("dvc is not on PATH; run `make demo` (it sets up .venv) rather than this script")
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        raise DemoError(f"{ROOT} is not a git clone with a commit; DVC experiments need one (git clone the project)")
    mine, name = parse_args(argv)
    name = name or experiment_name(mine)

    from stages.lib.errors import PipelineError
    from stages.lib.model_names import CACHE, check_names
    from stages.lib.params import params_from_dict

    committed = git("show", "HEAD:params.yaml")
    text, values = demo_params_text(committed, OVERRIDES + mine)
    origin = "params.yaml" if not mine else "ARGS"
    try:  # every value, as the check stage checks it: keys, types, rules, names (timm's models too)
        check_names(params_from_dict(values, origin), origin, ROOT / CACHE)
    except PipelineError as exc:  # before anything is touched: nothing is lost
        raise DemoError(f"{exc}; nothing was run or changed") from None
    params = ROOT / "params.yaml"
    if params.read_text() != text and unrecorded_edits():
        raise DemoError(
            "params.yaml holds edits that no run recorded (git diff params.yaml); run them (dvc exp run), "
            "commit them, or undo them (git checkout params.yaml), then make demo again"
        )
    if params.read_text() != text:
        params.write_text(text)
    print(f"params.yaml: the study's settings + the demo's{' + ' + ' '.join(mine) if mine else ''}", flush=True)
    print("$ dvc repro", flush=True)
    start = time.monotonic()
    code = run_dvc("repro")
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        print("\ninterrupted: what finished is kept; `make demo` again continues from there (training resumes "
              "from its last finished epoch), `dvc exp apply demo` brings back the last complete demo",
              file=sys.stderr)
        return code
    if code != 0:
        raise DemoError("the demo pipeline failed (see above); `dvc exp apply demo` brings back the last complete "
                        "demo, if there was one")
    subprocess.run(["dvc", "exp", "save", "--force", "--name", name], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["dvc", "plots", "show", "--out", "dvc_plots"], cwd=ROOT, capture_output=True)
    minutes = (time.monotonic() - start) / 60

    summary = json.loads((ROOT / "report" / "summary.json").read_text())["digits"]
    print()
    print((ROOT / "report" / "summary.md").read_text())
    untrained = summary["pretrained"]["kmeans_acc"]
    gains = ", ".join(
        f"{m} {summary[m]['kmeans_acc']:.1%} ({(summary[m]['kmeans_acc'] - untrained) * 100:+.1f} points)"
        for m in ("classification", "triplet") if m in summary
    )
    print(f"K-means accuracy: untrained network {untrained:.1%}; after training: {gains}.")
    print(f"\nRecorded as experiment `{name}` ({minutes:.1f} min). Pictures: plots/ (UMAP, retrieval, confusion,")
    print("report/) and all of them in dvc_plots/index.html. params.yaml keeps the demo's settings; next:")
    print('  make demo ARGS="-S shots=15"        # a variation, recorded as demo-shots15')
    print("  dvc exp diff demo demo-shots15      # what changed between the two")
    print("  dvc exp show --drop '.*' --keep 'Experiment|.*seed0.json:kmeans_acc$|shots'   # every run side by side")
    print("  dvc exp apply demo                  # the demo's results back, byte for byte")
    print("  git checkout params.yaml            # the study's settings; then `dvc exp run` (needs a GPU, network)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
