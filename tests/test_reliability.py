"""Long-run reliability: NaN/inf steps, the run-directory lock, SIGINT/SIGTERM, kill -9 + resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spectrum_rl.cli import main
from spectrum_rl.errors import TrainingError
from spectrum_rl.trainer.checkpoint import list_checkpoints, read_jsonl
from spectrum_rl.trainer.learner import Learner
from tests.test_trainer import make_trainer, write_config


def _nan_loss_on(monkeypatch, steps: set[int] | None) -> None:
    """Make the loss NaN on the given steps (None: every step); the learner's n-th update (from 0)
    is step n."""
    update, micro_loss = Learner.update, Learner.micro_loss
    updates = []

    def counted(self, *args, **kwargs):
        updates.append(None)
        return update(self, *args, **kwargs)

    def poisoned(self, *args, **kwargs):
        loss = micro_loss(self, *args, **kwargs)
        return loss * float("nan") if steps is None or len(updates) - 1 in steps else loss

    monkeypatch.setattr(Learner, "update", counted)
    monkeypatch.setattr(Learner, "micro_loss", poisoned)


def test_a_nonfinite_step_is_skipped_and_logged(tmp_path, tiny_random_lm_dir, monkeypatch):
    _nan_loss_on(monkeypatch, {1})  # the second step
    trainer = make_trainer(write_config(tmp_path, tiny_random_lm_dir, {"steps": 3}))
    weights = []
    trainer.train(on_step=lambda m: weights.append([p.detach().clone() for p in trainer.policy.parameters()]))
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["nonfinite_skipped"] for m in metrics] == [0.0, 1.0, 0.0]
    assert "grad_norm" not in metrics[1] and "grad_norm" in metrics[2]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1]))  # no update at the bad step
    assert not all(torch.equal(a, b) for a, b in zip(weights[1], weights[2]))  # training went on
    assert all(torch.isfinite(p).all() for p in trainer.policy.parameters())


def test_nonfinite_steps_in_a_row_stop_the_run(tmp_path, tiny_random_lm_dir, monkeypatch, capsys):
    _nan_loss_on(monkeypatch, None)
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 5, "max_nonfinite_steps": 2})
    with pytest.raises(TrainingError, match="NaN/inf in 2 steps in a row"):
        make_trainer(path).train()
    capsys.readouterr()
    assert main(["train", str(path), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN/inf in 2 steps in a row (up to step 2" in err[0] and "learning_rate" in err[0]


def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding the run directory's lock (as a live training would)."""
    code = (
        "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.truncate(0); f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(120)"
    )
    run.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(run / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_run_locks_its_directory_and_a_dead_ones_lock_is_taken_over(tmp_path, tiny_random_lm_dir, capsys):
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 1})
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by a running training (pid {holder.pid})" in err[0]
        assert "run.output_dir" in err[0]
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert (run / ".lock").read_text() == str(holder.pid)  # left behind by the killed holder
    with pytest.warns(UserWarning, match=f"taking over the lock .* left by pid {holder.pid}"):
        assert main(["train", str(path)]) == 0
    assert (run / ".lock").read_text() == ""  # released on exit


def train_until(path: Path, run: Path, steps: int, timeout: float = 120) -> subprocess.Popen:
    """`spectrum-rl train path` in a subprocess (stderr piped, as text), returned once ``steps``
    steps are in ``run``'s metrics.jsonl (or it ended, or ``timeout`` passed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spectrum_rl", "train", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    while len(read_jsonl(run / "metrics.jsonl")) < steps and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_finishes_the_step_writes_a_checkpoint_and_exits(tmp_path, tiny_random_lm_dir, sig, code):
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 500})
    run = tmp_path / "run"
    proc = train_until(path, run, steps=2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    done = [m["step"] for m in read_jsonl(run / "metrics.jsonl")]
    assert done == list(range(1, len(done) + 1)) and len(done) < 500
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == f"step-{done[-1]}"
    assert f"interrupted by {sig.name} after step {done[-1]}" in err and "--resume" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_kill_9_at_a_random_moment_then_resume_gives_the_uninterrupted_weights(tmp_path, tiny_random_lm_dir):
    """kill -9 somewhere after the first checkpoint (mid-step, mid-eval or mid-checkpoint), then
    --resume: metrics.jsonl, eval.jsonl and completions.jsonl have every step once, and the final weights are
    bitwise those of an uninterrupted run (CPU, fixed seed)."""
    steps = 24
    (tmp_path / "ref").mkdir()
    reference = write_config(tmp_path / "ref", tiny_random_lm_dir, {"steps": steps, "save_every": 3})
    assert main(["train", str(reference)]) == 0
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": steps, "save_every": 3})
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spectrum_rl", "train", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    rng = random.Random(os.getpid())
    target = rng.randint(4, steps - 4)  # a random step to die in, with steps left after it either way

    def finished_steps() -> int:  # complete lines only: the run may be mid-write
        metrics = run / "metrics.jsonl"
        return metrics.read_text().count("\n") if metrics.exists() else 0

    deadline = time.time() + 240
    while not (run / "checkpoints" / "step-3").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    started, first = time.time(), finished_steps()
    while finished_steps() < target and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    step_time = (time.time() - started) / max(1, finished_steps() - first)
    delay = rng.uniform(0.0, step_time)  # somewhere inside the next step: rollout, update, eval or checkpoint
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(read_jsonl(run / "metrics.jsonl"))
    assert killed_at < steps, f"finished before the kill (delay {delay:.2f} s)"
    with pytest.warns(UserWarning, match=r"taking over the lock .* no longer running"):  # the killed run's pid
        assert main(["train", str(path), "--resume"]) == 0
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == list(range(1, steps + 1))
    assert [e["step"] for e in read_jsonl(run / "eval.jsonl")] == list(range(0, steps + 1))  # eval.every = 1
    logged = read_jsonl(run / "completions.jsonl")  # each eval's samples once, as the uninterrupted run wrote them
    assert logged == read_jsonl(tmp_path / "ref" / "run" / "completions.jsonl") and logged[-1]["step"] == steps
    ours, theirs = (
        load_file(run / "final" / "model.safetensors"),
        load_file(tmp_path / "ref" / "run" / "final" / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"killed after {killed_at} steps (delay {delay:.2f} s)"


@pytest.mark.parametrize("damage", ["truncate_state", "truncate_weights", "delete_weights"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_random_lm_dir, damage):
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 4, "save_every": 1, "keep_checkpoints": 2})
    trainer = make_trainer(path)
    states = {}

    def keep_weights(m):  # the weights each checkpoint holds
        states[m["step"]] = {k: v.clone() for k, v in trainer.policy.state_dict().items()}

    trainer.train(on_step=keep_weights)
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step-2", "step-3"]  # keep_checkpoints: last 2 (4 is final)
    (root / ".step-9.crashed").mkdir()  # a temporary folder left by a crash mid-write: never a checkpoint
    latest = root / "step-3"
    target = latest / ("trainer_state.json" if damage == "truncate_state" else "model.safetensors")
    if damage == "delete_weights":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step-3 is unreadable"):
        resumed = make_trainer(path, resume=True)
    assert resumed.step == 2
    assert all(torch.equal(v, states[2][k]) for k, v in resumed.policy.state_dict().items())
    resumed.save_checkpoint()
    assert not (root / ".step-9.crashed").exists()  # cleaned by the next save


def test_failing_rewards_follow_their_policy_and_are_counted(tmp_path, tiny_random_lm_dir, capsys):
    import yaml

    (tmp_path / "bad_rewards.py").write_text(
        "import time\n"
        "def flaky(completions, **kw):\n    return [float('nan') if i % 2 else 1.0 for i in range(len(completions))]\n"
        "def boom(completions, **kw):\n    raise RuntimeError('boom')\n"
        "def hang(completions, **kw):\n    time.sleep(30)\n"
    )
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 2, "prompts_per_step": 2, "group_size": 4})
    config = yaml.safe_load(path.read_text())
    config["domains"] = config["domains"][:1]
    config["domains"][0]["reward"] = [
        {"type": "exact_match"},
        {"type": "python", "name": "flaky", "function": "bad_rewards.py:flaky", "on_error": "zero"},
        {"type": "python", "name": "hang", "function": "bad_rewards.py:hang", "on_error": "zero", "timeout_s": 0.2},
        {"type": "python", "name": "boom", "function": "bad_rewards.py:boom", "on_error": "skip"},
    ]
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    assert main(["train", str(path)]) == 0
    assert time.perf_counter() - started < 60  # the hanging component cost 0.2 s a call, not 30
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m in metrics:  # 2 prompts x 4 completions per step
        assert m["reward_errors/sorting/flaky"] == 4 and m["reward_errors/sorting/hang"] == 8
        assert m["reward_errors/sorting/boom"] == 8
    config["domains"][0]["reward"][3]["on_error"] = "fail"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", str(path), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "domain 'sorting', component 'boom': all samples: RuntimeError: boom" in err[0]


@pytest.mark.slow
def test_sigterm_to_one_process_stops_every_process_after_the_same_step(tmp_path, tiny_random_lm_dir):
    """torchrun, 2 processes: SIGTERM to rank 1 only. Both agree (all-reduce) to stop after the same
    step and say so; rank 0 writes that step's checkpoint."""
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 500, "prompts_per_step": 4, "group_size": 3})
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29519",
        "-m",
        "spectrum_rl",
        "train",
        str(path),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.time() + 180
    while len(read_jsonl(run / "metrics.jsonl")) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = _read(Path(f"/proc/{proc.pid}/task/{proc.pid}/children")).split()
    rank1 = [int(pid) for pid in workers if b"RANK=1\0" in _read(Path(f"/proc/{int(pid)}/environ"))]
    assert len(rank1) == 1, "rank 1 not found"
    os.kill(rank1[0], signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0  # torchrun reports its workers' exit
    done = [m["step"] for m in read_jsonl(run / "metrics.jsonl")]
    assert done == list(range(1, len(done) + 1)) and len(done) < 500
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == f"step-{done[-1]}"
    assert err.count(f"interrupted by SIGTERM after step {done[-1]}") == 2, err[-2000:]  # both ranks, same step
    assert "exitcode  : 143" in err  # torchrun's report (it may stop the second worker itself)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
