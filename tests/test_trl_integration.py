"""The scheduler inside TRL's GRPOTrainer (spectrum_rl/integrations/trl.py), on a tiny random Llama:
each generation batch holds the rows the scheduler planned, and the scheduler hears TRL's rewards."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

import spectrum_rl as srl  # noqa: E402
from spectrum_rl.integrations.trl import ScheduledGRPOTrainer  # noqa: E402
from spectrum_rl.models import load_tokenizer  # noqa: E402

G = 4  # completions per prompt


def _dataset() -> Dataset:
    rows = [
        {"prompt": f"{d} {i}:", "domain": d, "level": 1 + i % 3} for d in ("math", "code", "poems") for i in range(12)
    ]
    return Dataset.from_list(rows)


def _args(tmp_path, steps: int, processes: int = 1) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=4 * G // processes,  # 4 prompts x G completions per step
        num_generations=G,
        max_completion_length=6,
        max_steps=steps,
        learning_rate=1e-3,
        beta=0.0,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def test_grpo_batches_follow_the_plan_and_the_scheduler_hears_trl_rewards(tmp_path, tiny_random_lm_dir):
    batches: list[list[tuple[str, int]]] = []

    def reward(completions, domain, level, **kwargs):
        batches.append(list(zip(domain, level)))
        # math: half the completions pass (learnable); code: always; poems: never
        return [float(len(c) % 2) if d == "math" else float(d == "code") for c, d in zip(completions, domain)]

    scheduler = srl.Scheduler(
        [srl.Domain("math", levels=(1, 3)), srl.Domain("code", pool=12), srl.Domain("poems", kind="creative")],
        prompts_per_step=4,
        policy="adaptive",
        steps=10,
    )
    heard = []
    observe = scheduler.observe
    scheduler.observe = lambda outcomes, entropy=None: heard.append(list(outcomes)) or observe(outcomes, entropy)
    trainer = ScheduledGRPOTrainer(
        model=str(tiny_random_lm_dir),
        reward_funcs=reward,
        args=_args(tmp_path, 10),
        train_dataset=_dataset(),
        processing_class=load_tokenizer(str(tiny_random_lm_dir)),
        scheduler=scheduler,
        difficulty_column="level",
    )
    trainer.train()
    plans = trainer.sampler.plans
    assert len(batches) == len(heard) == 10 and len(plans) >= 10
    logged = [h for h in trainer.state.log_history if "reward" in h]
    for step, (plan, batch, outcomes, log) in enumerate(zip(plans, batches, heard, logged)):
        # the batch TRL generated for is the plan: each planned prompt G times, at a planned level
        assert Counter(d for d, _ in batch) == {d: n * G for d, n in plan.prompts.items() if n}, step
        assert all(lv in plan.levels["math"] for d, lv in batch if d == "math"), step
        # the scheduler heard one group per prompt, with TRL's rewards (their mean is TRL's logged reward)
        assert [o.domain for o in outcomes] == [d for d, _ in batch[::G]]
        rewards = [r for o in outcomes for r in o.rewards]
        assert len(rewards) == len(batch) and sum(rewards) / len(rewards) == pytest.approx(log["reward"], abs=1e-6)
        assert all(o.level is not None for o in outcomes if o.domain == "math")
        assert all(o.index is not None and 0 <= o.index < 12 for o in outcomes)
        assert log[f"spectrum/share/{outcomes[0].domain}"] > 0
    assert any(p.reason.startswith("adaptive: learnability") for p in plans)  # the rewards moved the mixture


def test_mismatched_settings_are_clear_errors(tmp_path, tiny_random_lm_dir):
    kw = dict(
        model=str(tiny_random_lm_dir),
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        processing_class=load_tokenizer(str(tiny_random_lm_dir)),
    )
    domains = [srl.Domain("math"), srl.Domain("code"), srl.Domain("poems")]
    with pytest.raises(ValueError, match="prompts_per_step=4"):
        ScheduledGRPOTrainer(
            **kw,
            args=_args(tmp_path, 2),
            train_dataset=_dataset(),
            scheduler=srl.Scheduler(domains, prompts_per_step=3),
        )
    with pytest.raises(ValueError, match=r"no rows of \['art'\]"):
        ScheduledGRPOTrainer(
            **kw,
            args=_args(tmp_path, 2),
            train_dataset=_dataset(),
            scheduler=srl.Scheduler([*domains, srl.Domain("art")], prompts_per_step=4),
        )
    with pytest.raises(ValueError, match="no column 'topic'"):
        ScheduledGRPOTrainer(
            **kw,
            args=_args(tmp_path, 2),
            train_dataset=_dataset(),
            scheduler=srl.Scheduler(domains, prompts_per_step=4),
            domain_column="topic",
        )
    with pytest.raises(ValueError, match="no SFT term"):
        ScheduledGRPOTrainer(
            **kw,
            args=_args(tmp_path, 2),
            train_dataset=_dataset(),
            scheduler=srl.Scheduler(domains, prompts_per_step=4, sft={"mu": {"type": "constant"}}),
        )


@pytest.mark.slow
def test_two_processes_draw_the_same_plans_and_split_each_batch(tmp_path, tiny_random_lm_dir):
    """Under torchrun (2 CPU processes, gloo), both ranks' schedulers hear the same gathered rewards,
    so they plan the same batches; the two halves of each generation batch make up the plan."""
    import json
    import os
    import subprocess
    import sys

    from tests.test_sharding import free_port

    worker = Path(__file__).parent / "trl_worker.py"
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    proc = subprocess.run(
        [sys.executable, *launch, str(worker), str(tiny_random_lm_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert a["plans"] == b["plans"] and a["scheduler"] == b["scheduler"]
    assert len(a["seen"]) == len(b["seen"]) == 6
    for plan, mine, theirs in zip(a["plans"], a["seen"], b["seen"]):
        assert Counter(mine + theirs) == {d: n * G for d, n in plan.items() if n}
