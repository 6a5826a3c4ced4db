"""The learner stage: a step's weighted rows become ``num_iterations`` optimizer updates.

    L = sum_rl w_i l_t / D_rl + sum_sft w_i nll_t / D_sft        (trainer/logprobs.py, objectives/losses.py)

D_rl and D_sft are the step's denominators over all processes, so that micro-batches (cut by the
``MicroBatchBudget``) add up to one loss. Rows of weight 0 (mu = 1, gated prompts, dropped
zero-variance groups) are left out. Every process runs exactly one gradient-synchronising backward
per pass (a zero loss when it has no rows), so processes with different row counts stay in step.
``update`` returns the step's statistics; it decides nothing (the weights, the learning-rate scale
and the per-layer factors come from the blend, scheduler/blend.py ``weigh``).
"""

from __future__ import annotations

import contextlib
import math

import torch

from spectrum_rl.config.schema import TrainingConfig
from spectrum_rl.objectives.losses import aggregate, policy_loss, rl_denominator, rl_token_loss, sft_token_loss
from spectrum_rl.trainer.batch import MicroBatch, Row
from spectrum_rl.trainer.distributed import sum_over_processes
from spectrum_rl.trainer.logprobs import token_logprobs
from spectrum_rl.trainer.memory import MicroBatchBudget
from spectrum_rl.trainer.metrics import DeviceSums, Sums
from spectrum_rl.trainer.setup import TrainState
from spectrum_rl.trainer.sharding import clip_grad_norm


class Learner:
    """Forward/backward over micro-batches and AdamW steps for one ``TrainState``."""

    def __init__(self, state: TrainState, cfg: TrainingConfig) -> None:
        self.state, self.cfg = state, cfg
        self.loss = policy_loss(cfg.loss)
        self.budget = MicroBatchBudget(state, cfg.micro_batch_size, cfg.micro_batch_tokens, cfg.memory_fraction)

    def update(
        self,
        rows: list[Row],
        lr_scale: float = 1.0,
        layer_scales: tuple[list[float], list[float]] | None = None,
        sketches: dict[str, torch.Tensor] | None = None,
    ) -> Sums:
        """Train on ``rows`` (weighted by the blend); ``lr_scale`` multiplies the scheduled rate;
        ``layer_scales``: per-parameter gradient factors of the RL and SFT parts (per-layer mu);
        ``sketches``, when given, collects each domain's gradient sketch of the first pass."""
        cfg, st = self.cfg, self.state
        stats = Sums()
        rows = [r for r in rows if r.weight > 0]
        rl_rows = [r for r in rows if r.role != "sft"]
        sft_rows = [r for r in rows if r.role == "sft"]
        local_rl_tokens = sum(len(r.completion) for r in rl_rows)
        local = [local_rl_tokens, len(rl_rows), sum(len(r.completion) for r in sft_rows)]
        rl_tokens, rl_seqs, sft_tokens = sum_over_processes(st.acc, local)
        if rl_tokens + sft_tokens == 0:
            return stats
        world = st.acc.num_processes
        rl_den = rl_denominator(
            self.loss.aggregation,
            tokens=rl_tokens,
            sequences=rl_seqs,
            local_tokens=local_rl_tokens,
            max_new_tokens=cfg.max_new_tokens,
            world=world,
        )
        sft_den = max(sft_tokens, 1.0) / world
        scales = None
        if st.grad_scale is not None and layer_scales is not None:  # per-layer mu, applied to gradients
            scales = (torch.tensor(layer_scales[0]), torch.tensor(layer_scales[1]))
        for iteration in range(cfg.num_iterations):
            while True:
                try:
                    if iteration == 0:  # cut (and, with several passes, score) under the current caps
                        batches = self.budget.cut(rl_rows, sft_rows)
                        old_logps = self._old_logps([mb for mb, is_rl in batches if is_rl])
                    first = Sums() if iteration == 0 else None  # statistics of the first pass only
                    self._pass(batches, old_logps, rl_den, sft_den, first, scales, sketches)
                    break
                except torch.OutOfMemoryError:
                    # Before the step's first update nothing has changed: halve the micro-batches
                    # and redo the pass. With several processes the others would wait forever in
                    # the gradient all-reduce, so there the error stands.
                    if iteration > 0 or world > 1 or not self.budget.halve(batches):
                        raise
                    st.optimizer.zero_grad(set_to_none=True)
                    if st.device.type == "cuda":
                        torch.cuda.empty_cache()
                    stats.add("oom_retries", 1.0, 0)
            if first is not None:
                stats.merge(first)
            self._step(iteration, lr_scale, stats)
        for name in ("loss/rl", "loss/sft"):  # each process holds its share: the mean over processes
            if name in stats.values:
                stats.values[name][1] = 1.0
        return stats

    def _step(self, iteration: int, lr_scale: float, stats: Sums) -> None:
        """Clip, and update unless the gradients are not finite (as AMP's GradScaler skips on overflow)."""
        st = self.state
        if st.sharded:
            grad_norm = clip_grad_norm(st.model.parameters(), self.cfg.max_grad_norm)
        else:
            grad_norm = float(st.acc.clip_grad_norm_(st.model.parameters(), self.cfg.max_grad_norm))
        finite = math.isfinite(grad_norm)  # NaN/inf anywhere (loss or gradients) makes the norm non-finite
        if finite:
            for group, lr in zip(st.optimizer.param_groups, st.lr_scheduler.get_last_lr()):
                group["lr"] = lr * lr_scale  # the blend's rate (sft.learning_rate) on top of the schedule's
            st.optimizer.step()
            st.lr_scheduler.step()
            if iteration == 0:
                stats.add("grad_norm", grad_norm)
        stats.add("nonfinite_skipped", float(not finite))  # fraction of this step's updates skipped
        st.optimizer.zero_grad(set_to_none=True)

    def _pass(self, batches, old_logps, rl_den: float, sft_den: float, stats: Sums | None, layer_scales, sketches):
        """One pass of forward/backward over the micro-batches, gradients accumulated; its statistics
        stay on the device until the pass ends (one transfer, not one wait per micro-batch)."""
        st = self.state
        pending = DeviceSums() if stats is not None else None
        with st.kernels():  # one block per optimizer pass: the weights change after it
            for b, (mb, is_rl) in enumerate(batches):
                last = b == len(batches) - 1
                if st.grad_scale is not None:  # per-layer mu; none given: every layer at 1
                    if layer_scales is None:
                        st.grad_scale.fill_(1.0)
                    else:
                        st.grad_scale.copy_(torch.as_tensor(layer_scales[0 if is_rl else 1]))
                # DDP: one gradient all-reduce per pass; FSDP reduce-scatters each micro-batch's gradients
                sync = contextlib.nullcontext() if last or st.sharded else st.acc.no_sync(st.model)
                with sync, st.acc.autocast():
                    old = old_logps[b] if old_logps is not None and is_rl else None
                    loss = self.micro_loss(mb, is_rl, rl_den if is_rl else sft_den, old, pending, sketches)
                st.acc.backward(loss)
            if not batches:  # nothing here, but the other processes all-reduce gradients
                st.acc.backward(sum(p.sum() * 0.0 for p in st.model.parameters() if p.requires_grad))
        if stats is not None:
            stats.merge(pending.to_sums())

    @torch.no_grad()
    def _old_logps(self, batches: list[MicroBatch]) -> list[torch.Tensor] | None:
        """Log-probs before the first update (several passes only; one pass: the detached current ones)."""
        if self.cfg.num_iterations == 1:
            return None
        st = self.state
        with st.acc.autocast(), st.kernels():  # the precision the passes will compare them in
            return [
                token_logprobs(st.model, mb.to(st.device), self.cfg.temperature, share_prefix=st.share_prefix)
                for mb in batches
            ]

    def micro_loss(
        self,
        mb: MicroBatch,
        is_rl: bool,
        denominator: float,
        old_logp: torch.Tensor | None,
        stats: DeviceSums | None,
        sketches: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """This micro-batch's share of the step loss (RL rows or SFT rows); records into ``stats``
        and, on the first pass, each domain's gradient sketch into ``sketches``."""
        cfg, st = self.cfg, self.state
        luffy = mb.luffy if bool(mb.luffy.any()) else None  # asked of the host copy: no wait on the device
        mb = mb.to(st.device)
        luffy = None if luffy is None else mb.luffy
        mask, weight = mb.completion_mask, mb.weight
        temperature = cfg.temperature if is_rl else 1.0
        logp = token_logprobs(
            st.model, mb, temperature, share_prefix=st.share_prefix, checkpointed=st.activation_checkpointing
        )
        if not is_rl:
            loss = aggregate(sft_token_loss(logp, phi=cfg.sft.phi), mask, "token_mean", denominator, weight)
            if stats is not None:
                stats.add("loss/sft", loss, 0)
                stats.add("sft/nll", (-logp.detach() * mask).sum(), mask.sum())
            return loss
        ref = None
        if cfg.beta > 0:
            with torch.no_grad():
                # no gradients, so no checkpointing; sharded, one forward per micro-batch
                ref = token_logprobs(st.base, mb, temperature, share_prefix=st.share_prefix)
        terms = rl_token_loss(
            self.loss,
            logp,
            logp.detach() if old_logp is None else old_logp,
            mb.advantage,
            mask,
            level=cfg.importance_sampling_level,
            beta=cfg.beta,
            ref_logp=ref,
            kl_estimator=cfg.kl_estimator,
            luffy=luffy,
            luffy_gamma=cfg.sft.luffy_gamma,
        )
        loss = aggregate(terms.per_token, mask, self.loss.aggregation, denominator, weight)
        if sketches is not None and stats is not None:
            self._sketch_domains(terms.per_token, mask, mb.domains, sketches)
        if stats is not None:
            m = mask.float()
            n_tok = m.sum()
            stats.add("loss/rl", loss, 0)
            stats.add("clip_ratio/low_mean", (terms.clipped_low * m).sum(), n_tok)
            stats.add("clip_ratio/high_mean", (terms.clipped_high * m).sum(), n_tok)
            stats.add("clip_ratio/region_mean", ((terms.clipped_low | terms.clipped_high) * m).sum(), n_tok)
            if terms.kl is not None:
                stats.add("kl", (terms.kl.detach() * m).sum(), n_tok)
        return loss

    def _sketch_domains(
        self, per_token: torch.Tensor, mask: torch.Tensor, domains: list[str], sketches: dict[str, torch.Tensor]
    ) -> None:
        """Accumulate each domain's gradient sketch (token-mean RL loss of its rows in this micro-batch)."""
        for d in sorted(set(domains)):
            sel = torch.tensor([x == d for x in domains], device=per_token.device)
            m = mask[sel].float()
            loss_d = (per_token[sel] * m).sum() / m.sum().clamp(min=1)
            sketches[d] = sketches.get(d, 0) + self.state.sketch.sketch(loss_d)
