"""The training loop: execute one StepPlan per step — rollouts, rewards, advantages, spectrum loss.

One step (all processes draw the same prompts; process r keeps every world-th one):
 1. plan = planner.plan(step): prompts and demonstrations per domain, mu per domain.
 2. Draw them; roll out G completions per prompt (one batched decode).
 3. Score each group with its domain's hybrid reward; group-relative advantages.
 4. Weigh every row (scheduler/blend.py ``row_weights``): rollouts 1 - mu_d, demonstrations mu_d,
    gated prompts (HPT) trained on their demonstration instead, a gate domain's mu being the
    fraction of its prompts switched (the plan as executed, which is also what is logged).
 5. For num_iterations passes: forward/backward over micro-batches of all rows, one AdamW step.
    L = sum_rl w l_t / D_rl + sum_sft w nll_t / D_sft   (see trainer/loss.py)
 6. Report the step's StepSignals to the planner; the logged metrics are derived from them.
The trainer decides nothing: every choice of what to train on and how much comes from the plan.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from accelerate import Accelerator

from spectrum_rl.config import Config
from spectrum_rl.config.launcher import launcher_fsdp, wants_sharding
from spectrum_rl.config.load import check_sharding
from spectrum_rl.cpu.onednn import onednn_linear
from spectrum_rl.domains import Domain
from spectrum_rl.errors import ConfigError, TrainingError, TrainingInterrupted
from spectrum_rl.models import apply_prompt_format, load_causal_lm
from spectrum_rl.scheduler.blend import RowWeights, gate_mu, gate_switches, layer_factors, lr_factor, row_weights
from spectrum_rl.scheduler.plan import Planner, load_transfer
from spectrum_rl.scheduler.step import GroupOutcome, StepPlan, StepSignals
from spectrum_rl.tasks.base import Example
from spectrum_rl.tasks.common import derive_seed
from spectrum_rl.trainer.advantages import group_advantages
from spectrum_rl.trainer.alignment import GradientSketch, cosine_matrix
from spectrum_rl.trainer.batch import MicroBatch, Row, micro_batches, token_classes
from spectrum_rl.trainer.checkpoint import (
    append_jsonl,
    begin_checkpoint,
    commit_checkpoint,
    list_checkpoints,
    load_latest,
    save_checkpoint,
    truncate_jsonl,
)
from spectrum_rl.trainer.decoder import CAPTURES
from spectrum_rl.trainer.evaluate import evaluate
from spectrum_rl.trainer.interrupt import StopOnSignal
from spectrum_rl.trainer.loss import aggregate, rl_denominator, rl_token_loss, sft_token_loss, token_logprobs
from spectrum_rl.trainer.memory import auto_micro_batch_tokens
from spectrum_rl.trainer.metrics import SignalSums, Sums
from spectrum_rl.trainer.rollout import Rollouts, sample
from spectrum_rl.trainer.setup import check_trackers, flat_config, layer_mu_hooks, load_weights, lr_lambda, with_lora
from spectrum_rl.trainer.sharding import (
    SHARDED_DIR,
    agree_counts,
    clip_grad_norm,
    ensure_process_group,
    full_state_dict,
    gathered,
    load_sharded,
    local_numel,
    save_sharded,
    shard,
)


@dataclass
class _Group:
    """One local rollout group: its prompt, completions (texts and ids; a LUFFY expert last), which
    are valid, their advantages, and the outcome the blend weighs."""

    domain: str
    example: Example
    texts: list[str]
    completion_ids: list[list[int]]
    valid: list[bool]
    advantage: list[float]
    outcome: GroupOutcome


class Trainer:
    """Runs ``config`` on ``domains`` and writes the run directory (rank 0 only)."""

    def __init__(
        self,
        config: Config,
        domains: list[Domain],
        output_dir: Path,
        *,
        resume: bool = False,
        accelerator=None,
        base_dir: Path | None = None,
    ) -> None:
        self.config, self.domains = config, {d.name: d for d in domains}
        self.cfg = config.training
        self.output_dir = Path(output_dir)
        check_trackers(config.logging.trackers)
        cuda = torch.cuda.is_available()
        bf16 = self.cfg.bf16 if self.cfg.bf16 is not None else cuda
        self.acc = accelerator or Accelerator(
            cpu=not cuda,
            mixed_precision="bf16" if bf16 else "no",
            log_with=config.logging.trackers or None,
            project_dir=str(self.output_dir),
        )
        if self.cfg.prompts_per_step % self.acc.num_processes:
            raise ConfigError(
                f"must be divisible by the number of processes ({self.acc.num_processes})",
                field="training.prompts_per_step",
            )
        sc = config.scheduler
        transfer = (
            load_transfer(Path(base_dir or ".") / sc.transfer_file, config.domain_names) if sc.transfer_file else None
        )
        self.planner = Planner(
            config.kinds, config.prerequisites, sc, self.cfg.sft, self.cfg.prompts_per_step, transfer
        )
        self.sharded = wants_sharding(self.cfg.sharding)
        if self.sharded:  # (load_config checks it too, before a built-in model is built)
            check_sharding(config)
        launcher = launcher_fsdp() or {}
        torch.manual_seed(config.run.seed)
        model, self.tokenizer = load_causal_lm(config.model.name_or_path, config.model.dtype)
        needs_base = self.cfg.beta > 0 or config.eval.kl_to_base
        self.base = copy.deepcopy(model).eval().requires_grad_(False) if needs_base else None
        checkpointing = self.cfg.gradient_checkpointing
        if checkpointing == "auto":  # on for CUDA (as TRL) or when the accelerate FSDP config asks for it
            checkpointing = self.acc.device.type == "cuda" or launcher.get("activation_checkpointing", False)
        self._checkpointing = checkpointing
        if self._checkpointing:  # recompute each layer in the backward instead of keeping its activations
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Shared-prompt forward (loss.completion_logits) needs a KV cache, which checkpointing turns off;
        # it takes one forward or two depending on the rows, and sharded forwards are collectives.
        self._share_prefix = not self._checkpointing and not self.sharded
        self._mb_limits: tuple[int, int | None] | None = None  # micro-batch caps, resolved on the first step
        if self.cfg.lora is not None:
            model = with_lora(model, self.cfg.lora)
        if self.sharded:  # before the optimizer exists: it holds the shards (trainer/sharding.py)
            ensure_process_group(self.acc.device)
            model = shard(model, self.acc.device, reshard_after_forward=launcher.get("reshard_after_forward", True))
            if self.base is not None:
                self.base = shard(self.base, self.acc.device)
        params = [p for p in model.parameters() if p.requires_grad]
        # fused: one kernel for the whole update (CPU and CUDA); ~4x faster than the default on CPU
        optimizer = torch.optim.AdamW(
            params, lr=self.cfg.learning_rate, betas=self.cfg.adam_betas, fused=True, weight_decay=self.cfg.weight_decay
        )
        total_updates = self.cfg.steps * self.cfg.num_iterations
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg, total_updates))
        if self.sharded:  # accelerate would wrap the sharded model again (in DDP on a CPU)
            self.model, self.optimizer = model, optimizer
        else:
            self.model, self.optimizer = self.acc.prepare(model, optimizer)
            if self.base is not None:
                self.base.to(self.acc.device)
        self.lr_scheduler = scheduler  # stepped once per update (accelerate's wrapper would step per process)
        self.sketch = None
        if self.planner.alignment_every and self.acc.num_processes == 1:  # per-domain grads need one process
            self.sketch = GradientSketch(self.policy, sc.alignment_dim, config.run.seed)
        self._sketches: dict[str, torch.Tensor] | None = None
        self.step = 0
        self.stop_ids = [self.tokenizer(s, add_special_tokens=False)["input_ids"] for s in self.cfg.stop]
        self._prompt_cache: dict[str, list[int]] = {}
        self.token_patterns = {n: re.compile(p) for n, p in config.logging.token_classes.items()}
        self._grad_scale = None
        if self.cfg.sft.layer_mu != "uniform":  # per-layer mu scales gradients through hooks
            with gathered(self.model):  # sharded: on the whole parameters, which autograd sees (sharding.py)
                self._grad_scale, self._layer_depth = layer_mu_hooks(self.policy)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()

    # ----------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    @property
    def policy(self):
        return self.acc.unwrap_model(self.model)

    def train(self, on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, float]:
        """Run until ``training.steps``; returns the last held-out scores."""
        if self.is_main and self.step == 0:
            self.config_path.write_text(yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
            for name in ("metrics.jsonl", "eval.jsonl"):
                (self.output_dir / name).unlink(missing_ok=True)
        if self.config.logging.trackers:
            self.acc.init_trackers(self.config.run.name, config=flat_config(self.config.model_dump()))
        scores = self._eval() if self.step == 0 else {}
        nonfinite_run = 0
        with StopOnSignal() as stop:
            while self.step < self.cfg.steps:
                metrics = self.train_step()
                self.step += 1
                metrics["step"] = self.step
                if self.is_main:
                    append_jsonl(self.output_dir / "metrics.jsonl", metrics)
                if self.config.logging.trackers:
                    self.acc.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=self.step)
                if self.step % self.config.eval.every == 0 or self.step == self.cfg.steps:
                    scores = self._eval()
                if self.cfg.save_every and self.step % self.cfg.save_every == 0 and self.step < self.cfg.steps:
                    self.save_checkpoint()
                if on_step is not None:
                    on_step(metrics)
                nonfinite_run = nonfinite_run + 1 if metrics.get("nonfinite_skipped", 0) > 0 else 0
                if nonfinite_run >= self.cfg.max_nonfinite_steps:
                    raise TrainingError(
                        f"the loss or gradients were NaN/inf in {nonfinite_run} steps in a row (up "
                        f"to step {self.step}; those steps did not update the weights); lower "
                        "training.learning_rate or check the rewards and data"
                    )
                signum = self._agreed_signal(stop.signum)
                if signum and self.step < self.cfg.steps:
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(signum, self.step, str(path) if path else None)
        self._save_final()
        self.acc.wait_for_everyone()
        if self.config.logging.trackers:
            self.acc.end_training()
        return scores

    def _agreed_signal(self, signum: int | None) -> int:
        """The stop signal any process received (0: none), so that all processes stop together."""
        if self.acc.num_processes == 1:
            return signum or 0
        flag = torch.tensor([signum or 0], device=self.acc.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)

    @property
    def config_path(self) -> Path:
        return self.output_dir / "config.yaml"

    # ----------------------------------------------------------------------------------------
    def train_step(self, plan: StepPlan | None = None) -> dict[str, Any]:
        """One rollout batch and num_iterations optimizer steps; tells the planner what the step
        measured and returns the step's metrics. ``plan`` overrides the planner's (transfer probes)."""
        acc = self.acc
        plan = plan or self.planner.plan(self.step)
        self._sketches = {} if self.sketch is not None and self.planner.wants_alignment(self.step) else None
        # Data and sampling streams come from (seed, step[, rank]): the step number is the whole data
        # position, so a resumed run draws exactly what an uninterrupted one would.
        data_rng = random.Random(derive_seed(self.config.run.seed, "data", self.step))
        gen = torch.Generator(device=acc.device).manual_seed(  # on the policy's device: multinomial draws there
            derive_seed(self.config.run.seed, "sample", self.step, acc.process_index)
        )
        sums, signals = Sums(), SignalSums(list(self.domains))
        timings = {"rollout": 0.0, "reward": 0.0, "train": 0.0}

        # Draw what the plan asks for; every process draws the same and keeps its share.
        prompts = [(d, ex) for d, n in plan.prompts.items() for ex in self.domains[d].sample(n, data_rng)]
        demos = [(d, ex) for d, n in plan.demos.items() for ex in self.domains[d].sample(n, data_rng)]
        local_prompts = prompts[acc.process_index :: acc.num_processes]
        local_demos = [(d, ex) for d, ex in demos[acc.process_index :: acc.num_processes] if ex.expert is not None]

        # Roll out and score; the blend turns the outcomes into row weights (gate, zero variance).
        # Sharded, every process gathers the weights, with or without prompts of its own.
        with gathered(self.model):
            groups = self._rollout_groups(local_prompts, gen, sums, signals, timings) if local_prompts else []
        outcomes = [g.outcome for g in groups]
        switched = gate_switches(plan, outcomes, self.cfg.sft, self.cfg.group_size)
        if plan.gate:  # the gate's mu is the step's fraction of switched prompts, over all processes
            plan = replace(plan, mu={**plan.mu, **gate_mu(plan, self._gate_counts(plan, groups, switched))})
        weights = row_weights(
            plan, outcomes, switched, [d for d, _ in local_demos], self.cfg.sft, self.cfg.drop_zero_variance
        )
        rows = self._rows(groups, local_demos, weights, sums)

        t0 = time.perf_counter()
        lr_scale = lr_factor(plan.mean_mu(), self.cfg.sft, self.cfg.learning_rate)  # SFT and RL rates blended
        lr = self.lr_scheduler.get_last_lr()[0] * lr_scale
        self._optimize(rows, plan, sums, lr_scale)
        timings["train"] = time.perf_counter() - t0

        alignment = cosine_matrix(self._sketches) if self._sketches and len(self._sketches) > 1 else None
        metrics, step_signals = self._reduce(sums, signals, alignment)
        self.planner.observe_step(step_signals)
        metrics.update(step_signals.metrics())
        metrics.update({f"time/{k}": round(v, 4) for k, v in timings.items()})
        metrics.update(
            {
                "mu": round(plan.mean_mu(), 6),
                "mixture": {k: round(v, 6) for k, v in plan.mixture.items()},
                "learning_rate": lr,
                "scheduler/reason": plan.reason,
            }
        )
        metrics.update({f"mu/{d}": round(m, 6) for d, m in plan.mu.items()})
        return metrics

    def _gate_counts(
        self, plan: StepPlan, groups: list[_Group], switched: list[bool]
    ) -> dict[str, tuple[float, float]]:
        """(switched, prompts) per gate domain, summed over processes."""
        names = list(plan.gate)
        local = [
            [sum(s for g, s in zip(groups, switched) if g.domain == d), sum(g.domain == d for g in groups)]
            for d in names
        ]
        total = self.acc.reduce(torch.tensor(local, dtype=torch.float64, device=self.acc.device), "sum").tolist()
        return {d: (c[0], c[1]) for d, c in zip(names, total)}

    def _encode_prompt(self, prompt: str) -> list[int]:
        if prompt not in self._prompt_cache:
            text = apply_prompt_format(self.tokenizer, prompt, self.config.model.chat_template)
            self._prompt_cache[prompt] = self.tokenizer(text)["input_ids"]
        return self._prompt_cache[prompt]

    def _completion_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def _rollout_groups(self, local, gen, sums: Sums, signals: SignalSums, timings) -> list[_Group]:
        """Sample G completions per local prompt, score them, and compute their advantages."""
        cfg, G = self.cfg, self.cfg.group_size
        t0 = time.perf_counter()
        prompt_ids = [self._encode_prompt(ex.prompt) for _, ex in local for _ in range(G)]
        captured = CAPTURES["seconds"]
        with self.acc.autocast(), self._kernels():  # the training precision (bf16 on GPU: ~25% faster decode, H200)
            ro = sample(
                self.policy,
                prompt_ids,
                max_new_tokens=cfg.max_new_tokens,
                eos_id=self.tokenizer.eos_token_id,
                pad_id=self.tokenizer.pad_token_id,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                stop=self.stop_ids,
                generator=gen,
                static_cache=cfg.static_cache,
                graphs=False if self.sharded else cfg.decode_graphs,  # gathered weights move between rollouts
            )
        completions = [ids[m.bool()].tolist() for ids, m in zip(ro.completion_ids, ro.completion_mask)]
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        timings["rollout"] = time.perf_counter() - t0
        if CAPTURES["seconds"] > captured:  # a new CUDA graph shape: paid once, logged that step
            timings["graph_capture"] = CAPTURES["seconds"] - captured

        t0 = time.perf_counter()
        group_texts, group_ids, rewards, valid = [], [], [], []
        for i, (domain, ex) in enumerate(local):
            g_texts, g_ids = texts[i * G : (i + 1) * G], completions[i * G : (i + 1) * G]
            if cfg.sft.luffy and ex.expert is not None:  # LUFFY: the expert completion joins the group
                g_texts, g_ids = g_texts + [ex.expert], g_ids + [self._completion_ids(ex.expert)]
            result = self.domains[domain].reward.score(g_texts, ex)
            group_texts.append(g_texts)
            group_ids.append(g_ids)
            rewards.append(torch.tensor(result.total, dtype=torch.float32))
            valid.append(torch.tensor(result.valid))
            n = min(G, len(result.total))
            sums.add("reward", float(result.total[:n].sum()), n)
            signals.add(domain, reward=float(result.total[:n].sum()), rollouts=n)
            for part, values in result.parts.items():
                sums.add(f"reward/{domain}/{part}", float(values[:n].sum()), n)
            for part, count in result.errors.items():
                if count:
                    sums.add(f"reward_errors/{domain}/{part}", float(count), 0)
        timings["reward"] = time.perf_counter() - t0

        width = max(map(len, rewards))
        r = torch.stack([torch.nn.functional.pad(x, (0, width - len(x))) for x in rewards])  # [n, G(+1)]
        v = torch.stack([torch.nn.functional.pad(x, (0, width - len(x)), value=False) for x in valid])
        adv, zero_var = group_advantages(r, v, cfg.scale_rewards)
        self._rollout_entropy(local, ro, texts, sums, signals)
        for i, (domain, _) in enumerate(local):
            std = float(r[i][v[i]].std()) if int(v[i].sum()) > 1 else 0.0
            sums.add("reward_std", std)
            sums.add("frac_reward_zero_std", float(zero_var[i]))
            sampled = r[i][:G][v[i][:G]]  # RL is blind to a prompt whose rollouts all score 0 (HPT's switch)
            blind = sampled.numel() > 0 and float(sampled.max()) <= 0 and float(sampled.min()) == float(sampled.max())
            signals.add(
                domain,
                advantage_abs=float(adv[i][v[i]].abs().sum()),
                samples=float(v[i].sum()),
                groups=1.0,
                blind_groups=float(blind),
            )
        finished = ro.finished.float()
        lengths = ro.completion_mask.sum(1).float()
        sums.add("completions/mean_length", float(lengths.sum()), len(lengths))
        sums.add("completions/tokens", float(lengths.sum()), 0)
        sums.add("completions/clipped_ratio", float((1 - finished).sum()), len(finished))
        return [
            _Group(
                domain,
                ex,
                group_texts[i],
                group_ids[i],
                v[i].tolist(),
                adv[i].tolist(),
                GroupOutcome(domain, tuple(rewards[i].tolist()), bool(zero_var[i]), ex.expert is not None),
            )
            for i, (domain, ex) in enumerate(local)
        ]

    def _rollout_entropy(self, local, ro: Rollouts, texts: list[str], sums: Sums, signals: SignalSums) -> None:
        """Entropy of every sampled token, per domain and per token class. Measured on all on-policy
        rows before any loss weighting: zero-variance and gated groups are often the collapsed ones
        the entropy monitor exists to see; a LUFFY expert completion is not sampled, so not counted."""
        G = self.cfg.group_size
        mask = ro.completion_mask.float()
        ent = ro.entropy * mask
        sums.add("entropy", float(ent.sum()), float(mask.sum()))
        for i, (domain, _) in enumerate(local):
            rows = slice(i * G, (i + 1) * G)
            signals.add(domain, entropy=float(ent[rows].sum()), entropy_tokens=float(mask[rows].sum()))
        for j, text in enumerate(texts):
            if not any(p.search(text) for p in self.token_patterns.values()):  # cheap check first
                continue
            ids = ro.completion_ids[j][ro.completion_mask[j].bool()].tolist()
            for c, member in token_classes(self.tokenizer, ids, self.token_patterns).items():
                cm = torch.tensor(member, dtype=torch.float32)
                if cm.sum() > 0:
                    sums.add(f"entropy_class/{c}", float((ro.entropy[j, : len(member)] * cm).sum()), float(cm.sum()))

    def _rows(self, groups: list[_Group], demos: list[tuple[str, Any]], weights: RowWeights, sums: Sums) -> list[Row]:
        """Loss rows with the blend's weights: each group's valid completions (RL; a LUFFY expert
        last), then the demonstrations of gated prompts and the drawn demonstrations (SFT)."""
        G = self.cfg.group_size
        rows: list[Row] = []
        for g, weight in zip(groups, weights.rl):
            prompt = self._encode_prompt(g.example.prompt)
            for j, ids in enumerate(g.completion_ids):
                if not g.valid[j]:
                    continue
                role = "luffy" if j >= G else "rl"
                rows.append(Row(prompt, ids, role, g.domain, weight, g.advantage[j]))
        sft = [(g.domain, g.example, w) for g, w in zip(groups, weights.gated) if w > 0]
        sft += [(d, ex, w) for (d, ex), w in zip(demos, weights.sft)]
        rows += [Row(self._encode_prompt(ex.prompt), self._completion_ids(ex.expert), "sft", d, w) for d, ex, w in sft]
        sums.add("sft/samples", float(len(sft)), 0)
        for d in self.domains:  # every domain, every step: where the expert data went
            sums.add(f"sft/samples/{d}", float(sum(domain == d for domain, _, _ in sft)), 0)
        return rows

    def _optimize(self, rows: list[Row], plan: StepPlan, sums: Sums, lr_scale: float = 1.0) -> None:
        """num_iterations passes of forward/backward over micro-batches, one optimizer step each.

        Rows with weight 0 (mu = 1, gated, dropped zero-variance groups) are left out. Every
        process runs exactly one gradient-synchronising backward per pass (a zero loss when it
        has no rows), so processes with different row counts stay in step.
        """
        cfg, acc = self.cfg, self.acc
        pad = self.tokenizer.pad_token_id
        rows = [r for r in rows if r.weight > 0]
        rl_rows = [r for r in rows if r.role != "sft"]
        sft_rows = [r for r in rows if r.role == "sft"]
        # Denominators over the whole step (all processes), so micro-batches add up to one loss.
        local = [sum(len(r.completion) for r in rl_rows), len(rl_rows), sum(len(r.completion) for r in sft_rows)]
        rl_tokens, rl_seqs, sft_tokens = acc.reduce(
            torch.tensor(local, dtype=torch.float64, device=acc.device), "sum"
        ).tolist()
        if rl_tokens + sft_tokens == 0:
            return
        world = acc.num_processes
        rl_den = (
            max(
                rl_tokens
                if cfg.aggregation == "token_mean"
                else rl_denominator(torch.ones(int(rl_seqs), 1), cfg.aggregation, cfg.max_new_tokens),
                1.0,
            )
            / world
        )
        sft_den = max(sft_tokens, 1.0) / world
        layer_scales = None
        if self._grad_scale is not None:  # per-layer mu: (1 - mu_l) and mu_l are applied to gradients
            rl_factor, sft_factor = layer_factors(self._layer_depth, plan.mean_mu(), cfg.sft.layer_mu)
            layer_scales = (torch.tensor(rl_factor), torch.tensor(sft_factor))
        for iteration in range(cfg.num_iterations):
            while True:
                try:
                    if iteration == 0:  # cut (and, with several passes, score) under the current limits
                        size, budget = self._micro_batch_limits()
                        batches = [(mb, True) for mb in micro_batches(rl_rows, size, pad, budget)]
                        batches += [(mb, False) for mb in micro_batches(sft_rows, size, pad, budget)]
                        if self.sharded and acc.num_processes > 1:
                            batches = self._pad_batches(batches)
                        old_logps = None
                        if cfg.num_iterations > 1:
                            with self._kernels():
                                old_logps = self._old_logps([mb for mb, is_rl in batches if is_rl])
                    first = Sums() if iteration == 0 else None  # statistics of the first pass only
                    self._accumulate(batches, old_logps, rl_den, sft_den, first, layer_scales)
                    break
                except torch.OutOfMemoryError:
                    # Before the step's first update nothing has changed: halve the micro-batches
                    # and redo the pass. With several processes the others would wait forever in
                    # the gradient all-reduce, so there the error stands.
                    if iteration > 0 or acc.num_processes > 1 or not self._halve_micro_batches(batches):
                        raise
                    self.optimizer.zero_grad(set_to_none=True)
                    if acc.device.type == "cuda":
                        torch.cuda.empty_cache()
                    sums.add("oom_retries", 1.0, 0)
            if first is not None:
                for name, (total, count) in first.values.items():
                    sums.add(name, total, count)
            if self.sharded:
                grad_norm = clip_grad_norm(self.model.parameters(), cfg.max_grad_norm)
            else:
                grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
            finite = math.isfinite(grad_norm)  # NaN/inf anywhere (loss or gradients) makes the norm non-finite
            if finite:  # else skip the update, as AMP's GradScaler does on overflow
                for group, lr in zip(self.optimizer.param_groups, self.lr_scheduler.get_last_lr()):
                    group["lr"] = lr * lr_scale  # the blend's rate (sft.learning_rate); the scheduler resets it
                self.optimizer.step()
                self.lr_scheduler.step()
                if iteration == 0:
                    sums.add("grad_norm", grad_norm)
            sums.add("nonfinite_skipped", float(not finite))  # fraction of this step's updates skipped
            self.optimizer.zero_grad(set_to_none=True)
        for name in ("loss/rl", "loss/sft"):  # each process holds its share; mean over processes
            if name in sums.values:
                sums.values[name][1] = 1.0

    def _accumulate(self, batches, old_logps, rl_den: float, sft_den: float, first: Sums | None, layer_scales) -> None:
        """One pass of forward/backward over the micro-batches, gradients accumulated."""
        acc = self.acc
        with self._kernels():  # one block per optimizer pass: the weights change after it
            for b, (mb, is_rl) in enumerate(batches):
                last = b == len(batches) - 1
                if self._grad_scale is not None:
                    self._grad_scale.copy_(layer_scales[0 if is_rl else 1])
                # DDP: one gradient all-reduce per pass; FSDP reduce-scatters each micro-batch's gradients
                sync = contextlib.nullcontext() if last or self.sharded else acc.no_sync(self.model)
                with sync, acc.autocast():
                    old = old_logps[b] if old_logps is not None and is_rl else None
                    loss = self._micro_loss(mb, is_rl, rl_den if is_rl else sft_den, old, first)
                acc.backward(loss)
            if not batches:  # nothing here, but the other processes all-reduce gradients
                acc.backward(sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad))

    def _pad_batches(self, batches: list[tuple[MicroBatch, bool]]) -> list[tuple[MicroBatch, bool]]:
        """Sharded, every process runs as many RL and as many SFT micro-batches (each forward and
        backward is a collective, trainer/sharding.py): the ones short of the most get empty ones,
        a padding token with no mask and weight 0, which add nothing to the loss or the metrics."""
        rl = [b for b in batches if b[1]]
        sft = [b for b in batches if not b[1]]
        want_rl, want_sft = agree_counts([len(rl), len(sft)], self.acc.device)
        pad = self.tokenizer.pad_token_id
        empty = micro_batches([Row([pad], [pad], "rl", "", 0.0)], 1, pad)[0]
        empty = replace(empty, completion_mask=torch.zeros_like(empty.completion_mask))
        return rl + [(empty, True)] * (want_rl - len(rl)) + sft + [(empty, False)] * (want_sft - len(sft))

    def _micro_batch_limits(self) -> tuple[int, int | None]:
        """(rows, padded tokens) per micro-batch: ``micro_batch_size`` and ``micro_batch_tokens``,
        "auto" resolved on the first step (1024 on CPU, where it keeps peak memory low; on a GPU the
        cap that fits in half the free memory, trainer/memory.py), then kept, halved after each
        CUDA out-of-memory."""
        if self._mb_limits is None:
            budget = self.cfg.micro_batch_tokens
            if budget == "auto" and self.acc.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.acc.device)
                trainable = [p for p in self.model.parameters() if p.requires_grad]
                state = 0 if self.optimizer.state else 8 * local_numel(trainable)  # AdamW's, not yet taken
                config = self.policy.config
                budget = auto_micro_batch_tokens(free, config, self._checkpointing, reserve_bytes=state)
            elif budget == "auto":
                budget = 1024
            self._mb_limits = (self.cfg.micro_batch_size, budget)
        return self._mb_limits

    def _halve_micro_batches(self, batches) -> bool:
        """Halve both micro-batch caps after an out-of-memory; False when a micro-batch is already a
        single row (nothing left to halve)."""
        if all(mb.completion_ids.shape[0] == 1 for mb, _ in batches):
            return False
        size, budget = self._mb_limits
        largest = max(mb.prompt_ids.numel() + mb.completion_ids.numel() for mb, _ in batches)
        self._mb_limits = (max(1, size // 2), max(1, (budget or largest) // 2))
        if self.is_main:
            print(
                f"CUDA out of memory in a training micro-batch: retrying the step with micro-batches of at most "
                f"{self._mb_limits[0]} rows and {self._mb_limits[1]} padded tokens",
                file=sys.stderr,
                flush=True,
            )
        return True

    @torch.no_grad()
    def _old_logps(self, batches: list[MicroBatch]) -> list[torch.Tensor]:
        return [
            token_logprobs(self.model, mb.to(self.acc.device), self.cfg.temperature, share_prefix=self._share_prefix)
            for mb in batches
        ]

    def _micro_loss(
        self,
        mb: MicroBatch,
        is_rl: bool,
        denominator: float,
        old_logp: torch.Tensor | None,
        sums: Sums | None,
    ) -> torch.Tensor:
        """This micro-batch's share of the step loss (RL rows or SFT rows); records into ``sums``."""
        cfg, device = self.cfg, self.acc.device
        mb = mb.to(device)
        mask, weight = mb.completion_mask, mb.weight
        temperature = cfg.temperature if is_rl else 1.0
        logp = token_logprobs(self.model, mb, temperature, share_prefix=self._share_prefix)
        if not is_rl:
            loss = aggregate(sft_token_loss(logp, phi=cfg.sft.phi), mask, "token_mean", denominator, weight)
            if sums is not None:
                sums.add("loss/sft", float(loss.detach()), 0)
                sums.add("sft/nll", float((-logp.detach() * mask).sum()), float(mask.sum()))
            return loss
        ref = None
        if cfg.beta > 0:
            with torch.no_grad():
                # the frozen base keeps its KV cache under the policy's checkpointing; sharded, one forward
                ref = token_logprobs(self.base, mb, temperature, share_prefix=not self.sharded)
        terms = rl_token_loss(
            logp,
            logp.detach() if old_logp is None else old_logp,
            mb.advantage,
            eps_low=cfg.eps_low,
            eps_high=cfg.eps_high,
            beta=cfg.beta,
            ref_logp=ref,
            kl_estimator=cfg.kl_estimator,
            luffy=mb.luffy,
            luffy_gamma=cfg.sft.luffy_gamma,
        )
        loss = aggregate(terms.per_token, mask, cfg.aggregation, denominator, weight)
        if self._sketches is not None and sums is not None:
            self._sketch_domains(terms.per_token, mask, mb.domains)
        if sums is not None:
            m = mask.float()
            n_tok = float(m.sum())
            sums.add("loss/rl", float(loss.detach()), 0)
            sums.add("clip_ratio/low_mean", float((terms.clipped_low * m).sum()), n_tok)
            sums.add("clip_ratio/high_mean", float((terms.clipped_high * m).sum()), n_tok)
            sums.add("clip_ratio/region_mean", float(((terms.clipped_low | terms.clipped_high) * m).sum()), n_tok)
            if terms.kl is not None:
                sums.add("kl", float((terms.kl.detach() * m).sum()), n_tok)
        return loss

    def _sketch_domains(self, per_token: torch.Tensor, mask: torch.Tensor, domains: list[str]) -> None:
        """Accumulate each domain's gradient sketch (token-mean RL loss of its rows in this micro-batch)."""
        for d in sorted(set(domains)):
            sel = torch.tensor([x == d for x in domains], device=per_token.device)
            m = mask[sel].float()
            loss_d = (per_token[sel] * m).sum() / m.sum().clamp(min=1)
            sketch = self.sketch.sketch(loss_d)
            self._sketches[d] = self._sketches.get(d, 0) + sketch

    # ----------------------------------------------------------------------------------------
    def _reduce(self, sums: Sums, signals: SignalSums, alignment) -> tuple[dict[str, Any], StepSignals]:
        """Metric means over all processes (counts of 0 mean 'sum, not mean') and the step's signals,
        in one all-reduce."""
        names = sorted(self._all_names(sums))
        local = [v for n in names for v in sums.values.get(n, [0.0, 0.0])] + signals.flat()
        flat = self.acc.reduce(torch.tensor(local, dtype=torch.float64, device=self.acc.device), "sum").cpu().tolist()
        out: dict[str, Any] = {}
        for i, n in enumerate(names):
            total, count = flat[2 * i], flat[2 * i + 1]
            out[n] = round(total / count, 6) if count else round(total, 6)
        return out, signals.signals(flat[2 * len(names) :], alignment)

    def _all_names(self, sums: Sums) -> set[str]:
        """Metric names are the same on every process (gathered so the reduce lines up)."""
        if self.acc.num_processes == 1:
            return set(sums.values)
        gathered: list[Any] = [None] * self.acc.num_processes
        dist.all_gather_object(gathered, sorted(sums.values))
        return {n for names in gathered for n in names}

    def evaluate(self):
        """Held-out EvalResult of the current policy on all domains (all processes take part)."""
        with self._kernels(), gathered(self.model, self.base):  # sharded: whole weights while decoding
            return evaluate(
                self.policy,
                self.tokenizer,
                list(self.domains.values()),
                max_new_tokens=self.config.eval.max_new_tokens,
                batch_size=self.config.eval.batch_size,
                chat_template=self.config.model.chat_template,
                base=self.base,
                rank=self.acc.process_index,
                world=self.acc.num_processes,
                reduce=self._reduce_pairs,
            )

    def _kernels(self) -> contextlib.AbstractContextManager:
        """A block with fp32 CPU linear layers on oneDNN (``training.onednn_linear``; cpu/onednn.py)."""
        return onednn_linear(self.cfg.onednn_linear, self.acc.device, self.model, self.base)

    def _eval(self) -> dict[str, float]:
        """Evaluate, tell the scheduler, and log to eval.jsonl."""
        t0 = time.perf_counter()
        result = self.evaluate()
        scores = {name: round(v, 6) for name, v in result.scores.items()}
        self.planner.observe_eval(self.step, scores)
        if self.is_main:
            record = {
                "step": self.step,
                **{f"eval/{k}": v for k, v in scores.items()},
                "eval/mean": round(sum(scores.values()) / len(scores), 6),
                **{f"eval_reward/{k}": round(v, 6) for k, v in result.rewards.items()},
                "time/eval": round(time.perf_counter() - t0, 3),
            }
            if result.kl is not None:
                record["kl_to_base"] = round(result.kl, 6)
            append_jsonl(self.output_dir / "eval.jsonl", record)
        return scores

    def _reduce_pairs(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.acc.device)
        return self.acc.reduce(t, "sum").cpu().tolist()

    # ----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` (trainer/checkpoint.py); every process takes part. Sharded, each
        process writes its shards of the model and optimizer (trainer/sharding.py) and rank 0 the rest."""
        root = self.output_dir / "checkpoints"
        state = {
            "step": self.step,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "planner": self.planner.state_dict(),
        }
        path = None
        if not self.sharded:
            state["optimizer"] = self.optimizer.state_dict()
            if self.is_main:
                path = save_checkpoint(root, self.step, self._write_model, state, self.cfg.keep_checkpoints)
        else:
            folder = [str(begin_checkpoint(root, self.step)) if self.is_main else None]
            dist.broadcast_object_list(folder, src=0)  # one temporary folder for all processes' shards
            tmp = Path(folder[0])
            save_sharded(tmp / SHARDED_DIR, self.model, self.optimizer)
            self.acc.wait_for_everyone()
            if self.is_main:
                self.tokenizer.save_pretrained(tmp)
                path = commit_checkpoint(root, self.step, tmp, state, self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()
        return path

    def _write_model(self, folder: Path) -> None:
        self.policy.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def _save_final(self) -> None:
        """``final/``: the whole model in Hugging Face format, written by rank 0 (sharded, gathered
        there first: every process takes part); with LoRA the adapters merged."""
        final = self.output_dir / "final"
        state = full_state_dict(self.model) if self.sharded else None
        if not self.is_main:
            return
        model = self.policy
        if state is not None:  # a tied head comes back as a copy of the embeddings: keep one name per tensor
            names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
            state = {k: v for k, v in state.items() if k in names}
        if self.cfg.lora is not None:
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(final, state_dict=state)
        self.tokenizer.save_pretrained(final)

    def _resume(self) -> None:
        root = self.output_dir / "checkpoints"
        if self.sharded:
            load = lambda folder: load_sharded(folder / SHARDED_DIR, self.model, self.optimizer)  # noqa: E731
        else:
            load = lambda folder: load_weights(self.policy, folder)  # noqa: E731
        newest = list_checkpoints(root)[-1:]
        if newest and (newest[0] / SHARDED_DIR).is_dir() != self.sharded:
            raise ConfigError(
                f"{newest[0]} was written {'without' if self.sharded else 'with'} sharding; resume with the "
                "same setting",
                field="training.sharding",
            )
        found = load_latest(root, load)
        if found is None:
            return
        path, state = found
        if "optimizer" in state:  # sharded: loaded with the model's shards
            self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.planner.load_state_dict(state["planner"])
        self.step = int(state["step"])
        if self.is_main:
            for name in ("metrics.jsonl", "eval.jsonl"):
                truncate_jsonl(self.output_dir / name, self.step)
        self.acc.wait_for_everyone()
