"""Mutation testing (`make mutate`): mutmut over the code that computes the answer, each group of
modules with only the tests that concern it, then the summary that docs/testing.md records.

    python scripts/mutate.py                  # every group: every mutant tested again
    python scripts/mutate.py metrics splits   # some groups
    python scripts/mutate.py --fresh          # also regenerate the mutants and the test map from scratch
    python scripts/mutate.py --survivors metrics  # only last time's survivors and timeouts (after a new test)
    python scripts/mutate.py --summary        # only print the last run's table and survivors

Each group runs in `build/mutate/<group>/`: a copy of the project whose `[tool.mutmut]` section is
the project's (pyproject.toml) plus the group's modules and tests. mutmut maps every function to
the tests that call it and runs only those (stopping at the first failure) against each mutant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutate"
COPIED = ("stages", "tests", "params.yaml", "dvc.yaml")
UNFINISHED = "UNFINISHED"  # in a group's folder while its run has not ended: its results are incomplete

# It reads the rules from the source, which mutmut rewrites (every mutant is a copy of its function).
SOURCE_SCAN = "test_every_rule_has_a_rejecting_case"

# The split stage under `split.classes: unseen`: protocol.json (splits) and the tables (data).
UNSEEN_SPLIT_STAGE = ("tests/stages/test_unseen_stages.py::"
                      "test_the_split_stage_writes_the_unseen_split_of_the_seed_and_val_fraction_given")

# group -> (modules to mutate, mutant name patterns (None: every function), tests to run)
GROUPS: dict[str, tuple[list[str], list[str] | None, list[str]]] = {
    "metrics": (
        ["stages/lib/metrics.py"], None,
        ["tests/lib/test_metrics_kmeans.py", "tests/lib/test_metrics_retrieval.py", "tests/lib/test_metrics_search.py",
         "tests/lib/test_metrics_scores.py", "tests/stages/test_evaluate_values.py",
         "tests/stages/test_evaluate_device.py"],  # evaluate_bytes: the memory that sends evaluate to the CPU
    ),
    "stats": (
        ["stages/lib/stats.py", "stages/lib/chance.py", "stages/lib/study_scoring.py"], None,
        ["tests/lib/test_stats.py", "tests/lib/test_chance.py", "tests/lib/test_study_scoring.py"],
    ),
    "splits": (
        ["stages/lib/splits.py"], None,
        ["tests/lib/test_splits.py", "tests/lib/test_splits_edges.py", "tests/lib/test_splits_fuzz.py",
         "tests/stages/test_split_shots.py", "tests/lib/test_unseen_classes.py",
         # `check_params` (the split's own params rules, on datasets of the test's own and as params.yaml
         # states them) and `protocol_record` (protocol.json)
         "tests/lib/test_split_params.py", "tests/lib/test_params_rules.py",
         UNSEEN_SPLIT_STAGE,
         "-k", f"not {SOURCE_SCAN}"],
    ),
    "samplers": (
        ["stages/lib/methods/triplet.py", "stages/lib/methods/balanced.py"], None,
        ["tests/lib/test_methods.py", "tests/lib/test_triplet_sampling.py", "tests/lib/test_balanced_batches.py",
         "tests/lib/test_params_rules.py",  # the rules test the checks
         "-k", f"not one_epoch_of_fit and not {SOURCE_SCAN}"],
    ),
    "data": (  # the data selection only: not the stages' entry points nor `_train`'s metadata, logs and files
        ["stages/split.py", "stages/lib/training_data.py"],
        [f"stages.{name}*" for name in ("split.x_generated_tables", "split.x_list_checks",
                                         "lib.training_data.x_training_data", "lib.training_data.x_training_tables",
                                         "lib.training_data.x_decoded_splits", "lib.training_data.x__negatives")],
        ["tests/stages/test_data_path.py", "tests/stages/test_split_shots.py",
         "tests/stages/test_annotations.py::test_generated_split_sizes_test_like_the_study",
         # a CSV's own split column, and the refusals that name your own dataset's folder
         "tests/stages/test_own_data.py::test_table_download_keeps_groups_and_given_split",
         "tests/stages/test_own_data.py::test_table_shots_apply_to_the_given_train_split",
         "tests/stages/test_own_data.py::test_class_too_small_for_shots_names_the_folder",
         "tests/stages/test_own_data.py::test_a_given_split_under_unseen_trains_on_one_half_and_tests_on_every_image_of_the_other",
         UNSEEN_SPLIT_STAGE,
         "tests/stages/test_unseen_stages.py::test_the_training_tables_number_the_training_classes_and_refuse_the_study_pool"],
    ),
    "params": (  # the checks, not the YAML reading: the whole file's, each section's, the settings' rules
        ["stages/lib/params.py", "stages/lib/sections.py", "stages/lib/schema.py"],
        ["stages.lib.params.x__check*", "stages.lib.sections.xǁ*ǁcheck*", "stages.lib.sections.x__device_ok*",
         *(f"stages.lib.schema.x_{name}*" for name in ("at_least", "above", "within", "choice", "matches",
                                                      "starts_with", "check_settings")),
         "stages.lib.schema.xǁRuleǁ*"],
        # test_schema builds the rules at test time: params.yaml's own are built on import, before mutmut
        # switches a mutant on, so a mutant of `at_least` or `within` is only seen there
        ["tests/lib/test_params.py", "tests/lib/test_params_rules.py", "tests/lib/test_schema.py",
         "-k", f"not {SOURCE_SCAN}"],  # no fuzzing: slow
    ),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked"}


def toml(value) -> str:
    """A TOML value for the simple settings used here (strings, numbers, booleans, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def prepare(group: str, fresh: bool) -> Path:
    """Copy the project into the group's folder (keeping mutmut's results unless `fresh`)."""
    modules, _, tests = GROUPS[group]
    folder = WORK / group
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source, target = ROOT / name, folder / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():  # copy2 keeps modification times: mutmut re-mutates only changed files
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    text = (ROOT / "pyproject.toml").read_text()
    settings = dict(tomllib.loads(text)["tool"]["mutmut"])
    settings.update(source_paths=["stages/"], only_mutate=modules, pytest_add_cli_args_test_selection=tests)
    section = "[tool.mutmut]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in settings.items())
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text).rstrip() + "\n\n" + section
    (folder / "pyproject.toml").write_text(text)
    return folder


def patterns_of(group: str) -> list[str]:
    """The mutant names a group tests: its patterns, or every function of its modules."""
    modules, patterns, _ = GROUPS[group]
    return patterns or [m.removesuffix(".py").replace("/", ".") + ".*" for m in modules]


def run(group: str, fresh: bool, children: int, survivors: bool = False) -> None:
    patterns = patterns_of(group)  # named explicitly, mutmut tests them all again, not only new ones
    kept: dict[Path, dict] = {}
    if survivors:
        patterns = [name for name, state in results(group).items() if state != "killed"]  # timeouts too
        if not patterns:
            print(f"{group}: no survivors to test again")
            return
        # mutmut forgets every verdict when the test selection changed; the killed stay killed when
        # tests are only added, so their verdicts are put back afterwards.
        kept = {meta: json.loads(meta.read_text()) for meta in (WORK / group / "mutants").rglob("*.meta")}
    folder = prepare(group, fresh and not survivors)
    log = WORK / f"{group}.log"
    start, cpu = time.monotonic(), _children_cpu()
    unfinished = folder / UNFINISHED
    unfinished.write_text(f"`make mutate` was stopped during this group's run; run `make mutate GROUPS={group}`\n")
    with log.open("w") as out:
        code = _mutmut([str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(children),
                        *patterns], folder, out)
    seconds, cpu = time.monotonic() - start, _children_cpu() - cpu
    for meta, old in kept.items():
        new = json.loads(meta.read_text())
        for name, verdict in old["exit_code_by_key"].items():  # not `code`: mutmut's exit status, printed below
            if name not in patterns and name in new["exit_code_by_key"]:
                new["exit_code_by_key"][name] = verdict
        meta.write_text(json.dumps(new, indent=4))
    if not survivors:  # the timing of a whole group's run
        (folder / "timing.json").write_text(json.dumps({"seconds": round(seconds), "cpu_seconds": round(cpu),
                                                         "date": date.today().isoformat(), "children": children}))
    unfinished.unlink()
    print(f"{group}: mutmut exited {code} after {seconds / 60:.1f} min, {cpu / 60:.1f} CPU min "
          f"(log: {log.relative_to(ROOT)})", flush=True)


def _mutmut(command: list[str], folder: Path, out) -> int:
    """Run mutmut in a session of its own, so that Ctrl-C reaches this script only, which then ends
    every process of the run (mutmut, its fork server, the tests: SIGTERM, then SIGKILL after 10 s)
    before KeyboardInterrupt goes on; the group is left marked unfinished (see `run`)."""
    process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=_one_thread_each(),
                               start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise


def _one_thread_each() -> dict[str, str]:
    """The environment for mutmut: `--children` mutants run at once, each test process on one
    thread (torch, BLAS and OpenMP would otherwise each start one thread per core in every one of
    them, and the tests' small arrays gain nothing from it). A value you set yourself is kept."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process and their waited-for children:
    divided by the cores, what a run would take on a machine with nothing else running."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def results(group: str) -> dict[str, str]:
    """mutant name -> status, from mutmut's records in the group's folder (selected mutants only)."""
    patterns = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in patterns_of(group)]
    found = {}
    for meta in sorted((WORK / group / "mutants").rglob("*.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(p.match(name) for p in patterns):
                found[name] = STATUS.get(code, "suspicious")
    return found


def diff(group: str, name: str) -> str:
    """The changed lines of a mutant, from `mutmut show`."""
    shown = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "show", name], cwd=WORK / group,
                           capture_output=True, text=True).stdout
    lines = [line for line in shown.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return " / ".join(" ".join(line.split()) for line in lines)


def summary(groups: list[str]) -> None:
    """Markdown for docs/testing.md: per module counts, then every surviving mutant's change."""
    print("| group | module | mutants | killed | survived | no tests | timeout | other | killed % | minutes | "
          "CPU minutes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    survivors = []
    for group in groups:
        if (WORK / group / UNFINISHED).exists():
            print(f"| {group} | stopped before the end, incomplete: run `make mutate GROUPS={group}` again "
                  "| | | | | | | | | |")
            continue
        status = results(group)
        timing_file = WORK / group / "timing.json"
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
        minutes = f"{timing['seconds'] / 60:.1f}" if "seconds" in timing else "?"
        cpu = f"{timing['cpu_seconds'] / 60:.1f}" if "cpu_seconds" in timing else "?"
        modules = sorted({name.split(".x")[0] for name in status})
        for module in modules:
            mine = {k: v for k, v in status.items() if k.split(".x")[0] == module}
            count = {s: sum(1 for v in mine.values() if v == s) for s in ("killed", "survived", "no tests", "timeout")}
            other = len(mine) - sum(count.values())
            # a mutant no test reaches is a gap like a survivor: it counts against the score
            score = f"{100 * (count['killed'] + count['timeout']) / len(mine):.1f}"
            print(f"| {group} | {module} | {len(mine)} | {count['killed']} | {count['survived']} | "
                  f"{count['no tests']} | {count['timeout']} | {other} | {score} | {minutes} | {cpu} |")
            minutes = cpu = ""
        survivors += [(group, name, v) for name, v in sorted(status.items()) if v not in ("killed", "timeout")]
    print(f"\nSurvivors and untested mutants ({len(survivors)}):\n")
    for group, name, state in survivors:
        print(f"- `{name}` ({state}): `{diff(group, name)}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier results first")
    parser.add_argument("--summary", action="store_true", help="only print the summary of the last run")
    parser.add_argument("--survivors", action="store_true", help="test again only the last run's survivors")
    parser.add_argument("--children", type=int, default=(os.cpu_count() or 1) + 1,
                        help="mutants tested at once (default: the cores + 1, which keeps every core busy while "
                             "mutmut forks the next)")
    args = parser.parse_args()
    groups = args.groups or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if not args.summary:
        for group in groups:
            try:
                run(group, args.fresh, args.children, args.survivors)
            except KeyboardInterrupt:
                rest = " ".join(groups[groups.index(group):])
                print(f"make mutate: stopped during the {group} group, whose results are now incomplete "
                      f"(build/mutate/{group}); the groups before it are complete. "
                      f'Run `make mutate GROUPS="{rest}"` to finish.', file=sys.stderr)
                sys.exit(130)
    summary(groups)


if __name__ == "__main__":
    main()
