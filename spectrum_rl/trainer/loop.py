"""The training loop: build (setup.py), then per step plan -> experience (experience.py) -> blend
-> learner (learner.py) -> signals back to the planner, metrics to metrics.jsonl. The trainer decides
nothing: what to train on, and how much of it by SFT, comes from the plan (scheduler/plan.py) and the
blend (scheduler/blend.py); the stages return what they measured."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator

from spectrum_rl.config import Config
from spectrum_rl.domains import BuiltDomain, draw_for_plan, planner_for
from spectrum_rl.errors import ConfigError, TrainingError, TrainingInterrupted
from spectrum_rl.scheduler.blend import weigh
from spectrum_rl.scheduler.step import StepPlan
from spectrum_rl.sources.common import derive_seed
from spectrum_rl.trainer.alignment import cosine_matrix
from spectrum_rl.trainer.checkpoint import (
    BASE_DIR_NOTE,
    RUN_LOGS,
    append_jsonl,
    load_run_state,
    save_final,
    save_run_state,
)
from spectrum_rl.trainer.distributed import agreed_signal, gather_lists, reduce_step, sum_over_processes
from spectrum_rl.trainer.evaluate import eval_record, evaluate_state
from spectrum_rl.trainer.experience import ExperienceMaker
from spectrum_rl.trainer.interrupt import StopOnSignal
from spectrum_rl.trainer.learner import Learner
from spectrum_rl.trainer.metrics import plan_metrics
from spectrum_rl.trainer.setup import build_state, flat_config
from spectrum_rl.trainer.sharding import gathered


class Trainer:
    """Runs ``config`` on ``domains`` and writes the run directory (rank 0 only)."""

    def __init__(
        self,
        config: Config,
        domains: list[BuiltDomain],
        output_dir: Path,
        *,
        resume: bool = False,
        accelerator: Accelerator | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.config, self.cfg, self.output_dir = config, config.training, Path(output_dir)
        self.base_dir = base_dir  # where the config's relative paths start (its file's folder)
        self.domains = {d.name: d for d in domains}
        self.planner = planner_for(config, domains, base_dir)
        self.state = build_state(config, self.output_dir, accelerator, alignment=bool(self.planner.alignment_every))
        self.experience = ExperienceMaker(self.state, self.domains, config)
        # a prompt the model's format or positions cannot take fails here, before anything is written
        self.experience.check_prompts_fit(max(self.cfg.max_new_tokens, config.eval.max_new_tokens or 0))
        self.learner = Learner(self.state, self.cfg)
        self.step, self.rollouts = 0, 0  # optimizer steps and completions generated so far
        self.seed = config.run.seed  # data and sampling streams derive from (seed, step); probes vary it
        if self.state.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume and (saved := load_run_state(self.state, self.output_dir)) is not None:
            try:
                self.planner.load_state_dict(saved["planner"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(
                    f"the scheduler state of the newest checkpoint does not fit this config's scheduler "
                    f"({type(exc).__name__}: {str(exc)[:80]}); resume with the config it was written with, or "
                    "start afresh with `train --overwrite`",
                    file=str(self.output_dir / "checkpoints"),
                ) from None
            self.step = int(saved["step"])
            self.rollouts = int(saved["rollouts"])
            self.planner.observe_rollouts(self.rollouts)

    @property
    def policy(self) -> torch.nn.Module:
        return self.state.policy

    def train(self, on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, float]:
        """Run until ``training.steps`` (or ``training.max_rollouts``); returns the last held-out scores."""
        st, log = self.state, self.config.logging
        if st.is_main and self.step == 0:
            # the folder relative paths start from, for the commands that read the run alone (analyze)
            where = f"{BASE_DIR_NOTE}{Path(self.base_dir).resolve()}\n" if self.base_dir is not None else ""
            (self.output_dir / "config.yaml").write_text(
                where + yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
            )
            for name in RUN_LOGS:
                (self.output_dir / name).unlink(missing_ok=True)
        if log.trackers:
            st.acc.init_trackers(self.config.run.name, config=flat_config(self.config.model_dump()))
        scores = self.evaluate() if self.step == 0 else {}
        nonfinite_run = 0
        with StopOnSignal() as stop:
            while self.step < self.cfg.steps and not self.budget_spent:
                metrics = self.train_step()
                self.step += 1
                self.rollouts += int(metrics.get("rollouts/generated", 0))
                self.planner.observe_rollouts(self.rollouts)  # budget-paced policies read the share spent
                metrics["step"], metrics["rollouts/total"] = self.step, self.rollouts
                last = self.step == self.cfg.steps or self.budget_spent
                if st.is_main:
                    append_jsonl(self.output_dir / "metrics.jsonl", metrics)
                if log.trackers:
                    st.acc.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=self.step)
                if self.step % self.config.eval.every == 0 or last:
                    scores = self.evaluate()
                if self.cfg.save_every and self.step % self.cfg.save_every == 0 and not last:
                    self.save_checkpoint()
                if on_step is not None:
                    on_step(metrics)
                # A run of skipped (non-finite) updates will not heal by itself: stop and say what to change.
                nonfinite_run = nonfinite_run + 1 if metrics.get("nonfinite_skipped", 0) > 0 else 0
                if nonfinite_run >= self.cfg.max_nonfinite_steps:
                    raise TrainingError(
                        f"the loss or gradients were NaN/inf in {nonfinite_run} steps in a row (up "
                        f"to step {self.step}; those steps did not update the weights); lower "
                        "training.learning_rate or check the rewards and data"
                    )
                # A signal on any process stops all of them, after a checkpoint to resume from.
                signum = agreed_signal(st.acc, stop.signum)
                if signum and not last:
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(signum, self.step, str(path) if path else None)
        save_final(st, self.output_dir / "final", merge_lora=self.cfg.lora is not None)
        st.acc.wait_for_everyone()
        if log.trackers:
            st.acc.end_training()
        return scores

    @property
    def budget_spent(self) -> bool:
        """Whether ``training.max_rollouts`` completions have been generated."""
        return self.cfg.max_rollouts is not None and self.rollouts >= self.cfg.max_rollouts

    def train_step(self, plan: StepPlan | None = None) -> dict[str, Any]:
        """One rollout batch and num_iterations optimizer steps; tells the planner what the step
        measured and returns the step's metrics. ``plan`` overrides the planner's (transfer probes)."""
        st, cfg = self.state, self.cfg
        rank, world = st.acc.process_index, st.acc.num_processes
        # 1. The plan: prompts and demonstrations per domain, mu per domain.
        plan = plan or self.planner.plan(self.step)
        sketches = {} if st.sketch is not None and self.planner.wants_alignment(self.step) else None

        # 2. Data and sampling streams come from (seed, step[, rank]): the step number is the whole
        #    data position, so a resumed run draws exactly what an uninterrupted one would.
        seed = self.seed
        data_rng = random.Random(derive_seed(seed, "data", self.step))
        gen = torch.Generator(device=st.device).manual_seed(derive_seed(seed, "sample", self.step, rank))

        # 3. Every process draws the same prompts (by the plan's weight per prompt or level where it
        #    gives them) and keeps every world-th one.
        draw = partial(draw_for_plan, self.domains, plan, data_rng)
        prompts = [p for d, n in plan.prompts.items() for p in draw(d, n)]
        demos = [(d, ex) for d, n in plan.demos.items() for ex in self.domains[d].sample(n, data_rng)]
        share = itemgetter(slice(rank, None, world))
        local_prompts = share(prompts)
        local_demos = [(d, ex) for d, ex in share(demos) if ex.expert is not None]

        # 4. Experience: roll out, score, group-relative advantages (sharded: every process
        #    gathers the weights, with or without prompts of its own: it is a collective).
        with gathered(st.model):
            exp = self.experience.make(local_prompts, gen)
            if cfg.dynamic_sampling:  # DAPO: groups without signal are replaced by fresh prompts
                exp = self.experience.refill(exp, draw, partial(sum_over_processes, st.acc), share, gen)

        # 5. The blend: every row's weight from the plan and the scored rollouts (a gate domain's mu
        #    is the step's fraction of its prompts switched to their demonstration, over all
        #    processes), the learning-rate scale and the per-layer factors: one call.
        weights = weigh(
            plan,
            [g.outcome for g in exp.groups],
            [d for d, _ in local_demos],
            cfg.sft,
            group_size=cfg.group_size,
            learning_rate=cfg.learning_rate,
            drop_zero_variance=cfg.drop_zero_variance,
            layer_depth=st.layer_depth,
            total=partial(sum_over_processes, st.acc),
        )
        rows, row_stats = self.experience.rows(exp.groups, local_demos, weights)

        # 6. Learner: num_iterations passes over the rows; it receives numbers, not the plan.
        t0 = time.perf_counter()
        lr = st.lr_scheduler.get_last_lr()[0] * weights.lr_scale
        learn_stats = self.learner.update(rows, weights.lr_scale, weights.layer_scales, sketches)
        timings = {"rollout": 0.0, "reward": 0.0, **exp.timings, "train": time.perf_counter() - t0}

        # 7. One all-reduce for metrics and signals; the planner hears what the step measured.
        exp.stats.merge(row_stats)
        exp.stats.merge(learn_stats)
        alignment = cosine_matrix(sketches) if sketches and len(sketches) > 1 else None
        metrics, signals = reduce_step(st.acc, exp.stats, exp.signals, alignment)
        # Every group made counts, dynamic sampling's dropped ones included: the scheduler reads pass
        # rates from them, and the kept groups alone would hide a rung it has learned.
        outcomes = tuple(gather_lists(st.acc, self.experience.tracked_outcomes(exp.dropped + exp.groups)))
        self.planner.observe_step(replace(signals, prompt_outcomes=outcomes))

        # 8. The step's log line: what was measured, and the plan as executed.
        metrics.update(signals.metrics())
        metrics.update({f"time/{k}": round(v, 4) for k, v in timings.items()})
        metrics.update(plan_metrics(plan, weights, lr))
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Held-out scores of the policy (all processes take part), told to the planner and logged."""
        t0 = time.perf_counter()
        result = evaluate_state(self.state, list(self.domains.values()), self.config)
        scores = {name: round(v, 6) for name, v in result.scores.items()}
        self.planner.observe_eval(self.step, scores)
        if self.state.is_main:
            record = eval_record(self.step, result, time.perf_counter() - t0)
            append_jsonl(self.output_dir / "eval.jsonl", {**record, "rollouts": self.rollouts})
            for sample in result.samples:
                append_jsonl(self.output_dir / "completions.jsonl", {"step": self.step, **sample})
        return scores

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` (trainer/checkpoint.py); every process takes part."""
        extra = {"step": self.step, "rollouts": self.rollouts, "planner": self.planner.state_dict()}
        return save_run_state(self.state, self.output_dir / "checkpoints", self.step, extra, self.cfg.keep_checkpoints)
