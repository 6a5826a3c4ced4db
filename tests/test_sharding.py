"""Sharded training (training.sharding: fsdp, trainer/sharding.py) on CPU: 2 processes over gloo,
launched with torchrun, checked against one process and against DDP with the same global batch.
The runs are shared by the tests (module fixture); each takes ~10 s on 2 cores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spectrum_rl.trainer.checkpoint import read_jsonl
from tests.test_trainer import write_config

WORKER = Path(__file__).parent / "shard_worker.py"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(mode: str, folder: Path, processes: int, *extra: str) -> list[str]:
    worker = [str(WORKER), mode, str(folder / "run.yaml"), str(folder), *extra]
    if processes == 1:
        return [sys.executable, *worker]
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(free_port())]
    return [sys.executable, *launch, *worker]


def run(mode: str, folder: Path, processes: int, *extra: str, env: dict | None = None) -> list[dict]:
    proc = subprocess.run(
        command(mode, folder, processes, *extra),
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )
    errors = [line for line in proc.stderr.splitlines() if "rror" in line or "terminate" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + proc.stderr[-3000:]
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(processes)]


def write(folder: Path, model: Path, training: dict) -> Path:
    """A 4-step run of the trainer tests' two domains, checkpointed every step, with a frozen
    reference model (beta > 0: sharded too); ``folder/run.yaml``, output in ``folder/run``."""
    folder.mkdir(parents=True, exist_ok=True)
    # fp32: the comparisons hold to float summation order, which bf16 rounding would swamp
    every_step = {"steps": 4, "micro_batch_size": 2, "save_every": 1, "beta": 0.05, "bf16": False}
    write_config(folder, model, {**every_step, **training}, eval={"every": 2, "max_new_tokens": 6})
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_random_lm_dir) -> dict[str, Path]:
    """sharded: 2 processes, sharding auto under accelerate's FSDP environment, then order's probes;
    ddp: the same with sharding none; rows1 / rows2: fixed rows on 1 process unsharded / 2 sharded."""
    root = tmp_path_factory.mktemp("sharding")
    model = tiny_random_lm_dir
    folders = {
        "sharded": write(root / "sharded", model, {"sharding": "auto"}),
        "ddp": write(root / "ddp", model, {"sharding": "none"}),
    }
    rows = {"beta": 0.05, "num_iterations": 2, "sft": {"layer_mu": "increasing"}}
    folders["rows1"] = write(root / "rows1", model, {**rows, "sharding": "none"})
    folders["rows2"] = write(root / "rows2", model, {**rows, "sharding": "fsdp"})
    run("train", folders["sharded"], 2, "--probe", env={"ACCELERATE_USE_FSDP": "true"})
    run("train", folders["ddp"], 2, "--probe")
    run("rows", folders["rows1"], 1)
    run("rows", folders["rows2"], 2)
    return folders


def ranks(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


def test_two_processes_match_one_process_on_the_same_global_batch(runs, tiny_random_lm_dir):
    """3 optimizer steps (2 passes each: old log-probs; KL to the sharded base; per-layer mu) over the
    same 12 rows: one process takes them all, two sharded processes half each (unevenly split between
    RL and SFT micro-batches, so the padding to equal counts runs)."""
    assert [r["sharded"] for r in ranks(runs["rows2"])] == [True, True]
    one, two = (torch.load(runs[k] / "weights.pt") for k in ("rows1", "rows2"))
    start = load_file(tiny_random_lm_dir / "model.safetensors")
    assert sorted(one) == sorted(two)
    moved = max(float((one[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3  # training changed the weights: a comparison that can fail
    assert all(torch.allclose(one[k], two[k], atol=2e-6, rtol=0) for k in one), max(
        float((one[k] - two[k]).abs().max()) for k in one
    )


def test_each_process_holds_half_of_the_parameters_and_optimizer_state(runs):
    """Measured on the shards each process holds, under `accelerate launch --use_fsdp`'s environment
    with sharding: auto; the unsharded (DDP) run is the control."""
    sharded, ddp = ranks(runs["sharded"]), ranks(runs["ddp"])
    total = sharded[0]["total_params"]
    assert all(r["sharded"] and r["fsdp_units"] == 3 for r in sharded)  # 2 decoder layers + the root
    assert sum(r["local_params"] for r in sharded) == total
    for r in sharded:
        assert 0.45 < r["local_params"] / total < 0.55
        assert r["optimizer_local_state"] == 2 * r["local_params"]  # AdamW: exp_avg and exp_avg_sq shards
        assert r["base_local_params"] == r["local_params"]  # the frozen reference is sharded the same way
    assert all(not r["sharded"] and r["fsdp_units"] == 0 and r["local_params"] == total for r in ddp)


def assert_same_records(a: list[dict], b: list[dict]) -> None:
    """The same records but for timings, numbers equal up to float summation order: sharded and
    DDP runs reduce in different orders (on an AVX-512 CPU an entropy differed in the 6th digit)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        keys = sorted(k for k in x if not k.startswith("time/"))
        assert keys == sorted(k for k in y if not k.startswith("time/"))
        for k in keys:
            if isinstance(x[k], float) or isinstance(y[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6), (k, x, y)
            else:
                assert x[k] == y[k], (k, x, y)


def test_sharded_run_matches_ddp_and_writes_a_whole_hf_model(runs):
    """Rollouts, rewards, evaluation, checkpoints and final/: the sharded run ends where DDP does."""
    from transformers import AutoModelForCausalLM

    for r in ranks(runs["sharded"]):
        assert r["greedy_equal"] == {"static=True": True, "static=False": True, "generate": True}
    sharded, ddp = (runs[k] / "run" for k in ("sharded", "ddp"))
    # order's probes (weights and optimizer restored before each domain) find what DDP's find
    probes = [json.loads((run / "transfer.json").read_text()) for run in (sharded, ddp)]
    assert sorted(probes[0]["after"]) == ["acrostic", "sorting"]
    assert {k: probes[0][k] for k in ("before", "after")} == {k: probes[1][k] for k in ("before", "after")}
    a, b = (load_file(run / "final" / "model.safetensors") for run in (sharded, ddp))
    assert sorted(a) == sorted(b)
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert_same_records(read_jsonl(sharded / name), read_jsonl(ddp / name))
    loaded = AutoModelForCausalLM.from_pretrained(sharded / "final")
    assert all(torch.equal(loaded.state_dict()[k], a[k]) for k in a)
    assert (sharded / "checkpoints" / "step-3" / "sharded" / ".metadata").exists()


def test_kill_9_and_resume_ends_where_the_uninterrupted_run_does(runs, tmp_path, tiny_random_lm_dir):
    folder = write(tmp_path / "killed", tiny_random_lm_dir, {"sharding": "fsdp"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command("train", folder, 2),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = folder / "run" / "checkpoints" / "step-2"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, mid-run
    proc.wait()
    assert checkpoint.exists() and not (folder / "run" / "final").exists()
    # the same checkpoint resumed on one process: DCP reshards the 2 processes' shards onto 1
    one = tmp_path / "one_process"
    shutil.copytree(folder, one)
    (one / "run.yaml").write_text((folder / "run.yaml").read_text().replace(str(folder), str(one)))
    run("train", one, 1, "--resume")
    assert [m["step"] for m in read_jsonl(one / "run" / "metrics.jsonl")] == [1, 2, 3, 4]
    assert (one / "run" / "final" / "model.safetensors").exists()
    run("train", folder, 2, "--resume")
    resumed = load_file(folder / "run" / "final" / "model.safetensors")
    reference = load_file(runs["sharded"] / "run" / "final" / "model.safetensors")
    assert all(torch.allclose(resumed[k], reference[k], atol=1e-6, rtol=0) for k in reference)
    assert [m["step"] for m in read_jsonl(folder / "run" / "metrics.jsonl")] == [1, 2, 3, 4]
    # a sharded checkpoint is not resumed unsharded: a clear error, not a silent fresh start
    (folder / "run.yaml").write_text((folder / "run.yaml").read_text().replace("fsdp", "none"))
    proc = subprocess.run(command("train", folder, 1, "--resume"), capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "was written with sharding; resume with the same setting" in proc.stderr


def test_one_sharded_process_composes_with_bf16_and_checkpointing(tmp_path, tiny_random_lm_dir):
    """No launcher: a process group of one; bf16 autocast and activation checkpointing on."""
    training = {"sharding": "fsdp", "bf16": True, "gradient_checkpointing": True, "steps": 2, "save_every": 0}
    folder = write(tmp_path / "one", tiny_random_lm_dir, training)
    (report,) = run("train", folder, 1)
    assert report["sharded"] and report["fsdp_units"] == 3 and report["world"] == 1
    assert report["greedy_equal"]["static=True"] and report["greedy_equal"]["generate"]
    metrics = read_jsonl(folder / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2] and all(m["nonfinite_skipped"] == 0 for m in metrics)
    final = load_file(folder / "run" / "final" / "model.safetensors")
    start = load_file(tiny_random_lm_dir / "model.safetensors")
    assert max(float((final[k] - start[k]).abs().max()) for k in start) > 1e-4
