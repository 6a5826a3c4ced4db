"""Loading a run folder runs no code from it (trainer/checkpoint.py, trainer/sharding.py).

Unpickling a file runs whatever the file names, and checkpoints are shared and downloaded like
models. A tiny run and a tiny sharded run are trained once (module fixture). Then, in a copy of
the run per case, a pickle that creates a marker file when it is unpickled replaces one file that
`train --resume`, `order CONFIG --run DIR` or `domains CONFIG --dot --run DIR` reads. Each command
must refuse it with exit code 2 and one line on stderr naming the file, and the marker must not
exist. The commands run through the CLI's ``main`` in one separate interpreter (one per case
would take a minute in imports alone). The planner's state must come back from JSON exactly.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spectrum_rl.config import load_config, parse_override
from spectrum_rl.domains import build_domains, planner_for
from spectrum_rl.scheduler.blend import MU_SCHEDULES
from spectrum_rl.scheduler.policies import POLICIES
from tests.test_trainer import make_trainer, write_config

DOMAINS = ["sorting", "acrostic", "pool"]


class Plant:
    """Unpickled, it creates ``marker`` (as ``os.system`` or anything else could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps(Plant(marker))


def torch_pickle(obj) -> bytes:
    """``obj`` as torch.save writes it (a zip archive around its pickle)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_run_config(folder: Path, model: Path, training: dict, **sections) -> Path:
    """Three domains: a difficulty range (sorting), a creative one, a pass-rate pool with
    demonstrations; adaptive scheduling with gradient alignment every step and a transfer matrix
    (the checkpoint's planner state then holds one, for ``order --run``)."""
    folder.mkdir(parents=True)
    rng = random.Random(0)
    words = ["".join(rng.sample("abcdefgh", 4)) for _ in range(30)]
    (folder / "pool.jsonl").write_text(
        "".join(json.dumps({"question": f"sort: {w}", "answer": "".join(sorted(w))}) + "\n" for w in words)
    )
    (folder / "transfer.json").write_text(
        json.dumps({"transfer": {a: {b: 0.1 * (a == b) for b in DOMAINS} for a in DOMAINS}})
    )
    domains = [
        {
            "name": "sorting",
            "kind": "structured",
            "source": {"type": "builtin", "generator": "sorting", "difficulty": {"length": [2, 4]}},
            "eval": {"size": 4},
            "reward": [{"type": "exact_match"}],
        },
        {
            "name": "acrostic",
            "kind": "creative",
            "source": {"type": "builtin", "generator": "acrostic"},
            "eval": {"size": 4},
            "reward": [{"type": "constraint"}],
        },
        {
            "name": "pool",
            "kind": "structured",
            "source": {"type": "file", "path": "pool.jsonl"},
            "eval": {"size": 4},
            "sampling": "pass_rate",
            "expert_field": "answer",
            "reward": [{"type": "exact_match"}],
        },
    ]
    scheduler = {"policy": "adaptive", "alignment_every": 1, "transfer_file": "transfer.json"}
    training = {"prompts_per_step": 3, "save_every": 1, **training}
    return write_config(folder, model, training, domains=domains, scheduler=scheduler, **sections)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_random_lm_dir) -> dict:
    """``plain``: 3 steps in this process (checkpoints step-1, step-2), with every StepSignals and
    held-out score the planner was told; ``sharded``: 2 steps sharded over one process
    (checkpoint step-1), in a subprocess as the sharding tests run them."""
    root = tmp_path_factory.mktemp("safety")
    plain = write_run_config(root / "plain", tiny_random_lm_dir, {"steps": 3})
    trainer = make_trainer(plain, base_dir=plain.parent)
    heard: dict[str, list] = {"steps": [], "evals": []}
    observe_step, observe_eval = trainer.planner.observe_step, trainer.planner.observe_eval
    trainer.planner.observe_step = lambda s: (heard["steps"].append(s), observe_step(s))[1]
    trainer.planner.observe_eval = lambda step, s: (heard["evals"].append(s), observe_eval(step, s))[1]
    trainer.train()
    sharded = root / "sharded"
    sharded.mkdir()
    sharded_config = write_config(sharded, tiny_random_lm_dir, {"steps": 2, "save_every": 1, "sharding": "fsdp"})
    proc = subprocess.run(
        [sys.executable, "-m", "spectrum_rl", "train", str(sharded_config)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"plain": plain, "sharded": sharded_config, "heard": heard}


def _plant_old_layout(run: Path, marker: Path) -> None:
    """Every checkpoint as the previous version wrote it: one trainer_state.pt pickle."""
    for folder in (run / "checkpoints").iterdir():
        (folder / "trainer_state.json").unlink()
        (folder / "optimizer.pt").unlink()
        old = {"step": int(folder.name[5:]), "planner": Plant(marker), "lr_scheduler": {}, "optimizer": {}}
        (folder / "trainer_state.pt").write_bytes(torch_pickle(old))


def _plant_shard_value(run: Path, marker: Path) -> None:
    """A sharded checkpoint whose metadata is well-formed but sends one non-tensor value (the
    learning rate) to a pickle in another shard file: DCP's own loader unpickles such values with
    ``torch.load(weights_only=False)``."""
    folder = run / "checkpoints" / "step-1" / "sharded"
    metadata = pickle.loads((folder / ".metadata").read_bytes())  # written by this test's own run
    payload = torch_pickle(Plant(marker))
    (folder / "evil.distcp").write_bytes(payload)
    for index, info in metadata.storage_data.items():
        if index.fqn == "optimizer.param_groups.0.lr":
            info.relative_path, info.offset, info.length = "evil.distcp", 0, len(payload)
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))


def _replace(relative: str, content=raw_pickle):
    def plant(run: Path, marker: Path) -> None:
        (run / relative).write_bytes(content(marker))

    return plant


STATE, OPTIMIZER = "checkpoints/step-2/trainer_state.json", "checkpoints/step-2/optimizer.pt"
# (case, command, run, how the pickle is planted, the file the error must name)
CASES = [
    ("resume-state", "train", "plain", _replace(STATE), STATE),
    ("resume-optimizer", "train", "plain", _replace(OPTIMIZER, lambda m: torch_pickle(Plant(m))), OPTIMIZER),
    ("resume-old-layout", "train", "plain", _plant_old_layout, "checkpoints/step-2/trainer_state.pt"),
    ("resume-weights", "train", "plain", _replace("checkpoints/step-2/model.safetensors"), "model.safetensors"),
    ("resume-metrics", "train", "plain", _replace("metrics.jsonl"), "metrics.jsonl"),
    ("resume-eval", "train", "plain", _replace("eval.jsonl"), "eval.jsonl"),
    ("resume-metadata", "train", "sharded", _replace("checkpoints/step-1/sharded/.metadata"), "sharded/.metadata"),
    ("resume-shard-value", "train", "sharded", _plant_shard_value, "sharded/evil.distcp"),
    ("order-state", "order", "plain", _replace(STATE), STATE),
    ("order-old-layout", "order", "plain", _plant_old_layout, "checkpoints/step-2/trainer_state.pt"),
    ("order-transfer", "order", "plain", _replace("transfer.json"), "transfer.json"),
    ("order-metrics", "order", "plain", _replace("metrics.jsonl"), "metrics.jsonl"),
    ("domains-state", "domains", "plain", _replace(STATE), STATE),
    ("domains-old-layout", "domains", "plain", _plant_old_layout, "checkpoints/step-2/trainer_state.pt"),
    ("domains-transfer", "domains", "plain", _replace("transfer.json"), "transfer.json"),
    ("domains-metrics", "domains", "plain", _replace("metrics.jsonl"), "metrics.jsonl"),
    ("domains-eval", "domains", "plain", _replace("eval.jsonl"), "eval.jsonl"),
]


def _truncate(relative: str):
    def damage(run: Path, marker: Path) -> None:
        data = (run / relative).read_bytes()
        (run / relative).write_bytes(data[: len(data) // 2])

    return damage


# Damage that is no foreign format: the checkpoint is skipped with a warning, the one before resumed.
DAMAGE = [("damaged-state", _truncate(STATE)), ("damaged-optimizer", _truncate(OPTIMIZER))]


def _truncate_all(run: Path, marker: Path) -> None:
    for folder in (run / "checkpoints").iterdir():
        state = folder / "trainer_state.json"
        state.write_bytes(state.read_bytes()[:10])


_DRIVER = """
import contextlib, io, json, sys, traceback
from spectrum_rl.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException:  # a traceback is a failure of the case, not of the others
            traceback.print_exc()
            code = 1
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def _command(command: str, config: Path, run: Path) -> list[str]:
    if command == "train":
        return ["train", str(config), "--resume", "--set", f"run.output_dir={run}"]
    if command == "order":
        return ["order", str(config), "--run", str(run), "--json"]
    return ["domains", str(config), "--dot", "--run", str(run)]


@pytest.fixture(scope="module")
def outcomes(runs, tmp_path_factory) -> dict[str, dict]:
    """Every case, the damaged ones and the clean runs (``clean-<command>``) in a copy of its run:
    exit code, stderr, the copy and whether the marker exists after the command."""
    root = tmp_path_factory.mktemp("cases")
    todo = [(name, command, which, plant) for name, command, which, plant, _ in CASES]
    todo += [(name, "train", "plain", damage) for name, damage in DAMAGE]
    todo += [("damaged-all", "train", "plain", _truncate_all)]
    todo += [(f"clean-{c}", c, "plain", None) for c in ("train", "order", "domains")]
    todo += [("clean-sharded", "train", "sharded", None)]
    argvs, found = [], {}
    for name, command, which, plant in todo:
        config = runs[which]
        run = root / name
        shutil.copytree(config.parent / "run", run)
        marker = root / f"{name}.marker"
        if plant is not None:
            plant(run, marker)
        argvs.append(_command(command, config, run))
        found[name] = {"run": run, "marker": marker}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argvs)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (name, *_), result in zip(todo, json.loads(proc.stdout.splitlines()[-1])):
        found[name] |= result | {"ran": found[name]["marker"].exists()}
    return found


def test_the_planted_pickles_run_code_when_unpickled(tmp_path):
    """The payload is live: plain ``pickle.load`` and ``torch.load(weights_only=False)``, which the
    checkpoints were read with, create the marker."""
    pickle.loads(raw_pickle(tmp_path / "raw"))
    torch.load(io.BytesIO(torch_pickle(Plant(tmp_path / "zip"))), weights_only=False)
    assert (tmp_path / "raw").exists() and (tmp_path / "zip").exists()


@pytest.mark.parametrize(("case", "named"), [(c[0], c[4]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_planted_pickle_is_refused_and_runs_nothing(outcomes, case, named):
    outcome = outcomes[case]
    assert not outcome["ran"], f"{case}: the planted pickle ran"
    lines = outcome["stderr"].strip().splitlines()
    assert outcome["code"] == 2 and len(lines) == 1, outcome["stderr"][-3000:]
    assert lines[0].startswith(f"error: {outcome['run']}/") and named in lines[0], lines[0]


def test_the_old_layout_says_what_to_do(outcomes):
    (line,) = outcomes["resume-old-layout"]["stderr"].strip().splitlines()
    assert "trainer_state.pt: a checkpoint in the old pickle format, which can run code, is not loaded" in line
    assert "train --overwrite" in line


@pytest.mark.parametrize("case", [name for name, _ in DAMAGE])
def test_a_damaged_checkpoint_is_skipped_for_the_one_before(outcomes, case):
    outcome = outcomes[case]
    assert outcome["code"] == 0, outcome["stderr"][-3000:]
    assert "checkpoints/step-2 is unreadable" in outcome["stderr"]
    metrics = [json.loads(line) for line in (outcome["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # resumed after step 1: steps 2 and 3 again


def test_a_run_whose_every_checkpoint_is_damaged_is_not_restarted_over_its_logs(outcomes, runs):
    outcome = outcomes["damaged-all"]
    assert outcome["code"] == 2 and outcome["stderr"].strip().splitlines()[-1].startswith("error: "), outcome
    assert "no checkpoint here loads" in outcome["stderr"] and "--overwrite" in outcome["stderr"]
    original = runs["plain"].parent / "run" / "metrics.jsonl"
    assert (outcome["run"] / "metrics.jsonl").read_text() == original.read_text()  # the run asked to continue


@pytest.mark.parametrize("command", ["clean-train", "clean-order", "clean-domains", "clean-sharded"])
def test_an_intact_run_loads(outcomes, command):
    """The cases fail for their planted file: the same commands on an unchanged copy succeed."""
    outcome = outcomes[command]
    assert outcome["code"] == 0, outcome["stderr"][-3000:]
    assert "warning" not in outcome["stderr"]


def test_a_checkpoint_holds_json_and_tensors_only(runs):
    folder = runs["plain"].parent / "run" / "checkpoints" / "step-2"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["format"] == 2 and state["step"] == 2
    assert set(state) == {"format", "step", "rollouts", "planner", "lr_scheduler"}
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    assert set(optimizer) == {"state", "param_groups"}
    assert not (folder / "trainer_state.pt").exists()


def test_every_policy_and_mu_rule_round_trips_through_json(runs):
    """The planner state after real training steps (every policy and mu rule over the signals the
    run measured, with held-out scores that move; no transfer file, so the online estimate takes
    over) comes back from standard JSON exactly, and the reloaded planner plans as the original."""
    path, heard = runs["plain"], runs["heard"]
    domains = build_domains(load_config(path), path.parent)
    rng = random.Random(0)
    estimated = []
    for policy in POLICIES:
        for mu in MU_SCHEDULES:
            overrides = [f"scheduler.policy={policy}", f"training.sft.mu={mu}", "scheduler.transfer_file=null"]
            config = load_config(path, [parse_override(o) for o in overrides])
            planner = planner_for(config, domains, path.parent)
            planner.observe_eval(0, heard["evals"][0])
            for step in range(12):
                planner.plan(step)
                planner.observe_step(heard["steps"][step % len(heard["steps"])])
                planner.observe_eval(step + 1, {n: round(rng.random(), 3) for n in DOMAINS})
            state = planner.state_dict()
            estimated.append(state["transfer_online"])
            text = json.dumps(state, allow_nan=False)  # no NaN/Infinity; tuples or int keys would not compare equal
            again = planner_for(config, domains, path.parent)
            again.load_state_dict(json.loads(text))
            assert again.state_dict() == state, (policy, mu)
            assert again.plan(12) == planner.plan(12), (policy, mu)
    assert any(estimated)
