"""The experience stage: a step's prompts become scored groups, and groups become loss rows.

    prompts --sample G each--> completions --domain reward--> r [n, G] --group_advantages--> A
    groups + the blend's weights --rows--> Row(prompt, completion, role, domain, weight, A)

``make`` returns the groups with their statistics (logged metrics, the scheduler's signals and
timings); ``rows`` returns the rows with theirs. Nothing here decides what to train on: the plan
chose the prompts, and the blend (scheduler/blend.py) chooses the weights.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from spectrum_rl.config import Config
from spectrum_rl.domains import BuiltDomain
from spectrum_rl.errors import ConfigError
from spectrum_rl.models import apply_prompt_format, end_token_ids, uses_chat_template
from spectrum_rl.objectives.advantages import group_advantages
from spectrum_rl.rewards.text import error_summary
from spectrum_rl.scheduler.blend import StepWeights
from spectrum_rl.scheduler.step import GroupOutcome
from spectrum_rl.sources.base import Example
from spectrum_rl.trainer.batch import Row, token_classes
from spectrum_rl.trainer.metrics import SignalSums, Sums
from spectrum_rl.trainer.rollout import Rollouts, context_limit, sample
from spectrum_rl.trainer.setup import TrainState

log = logging.getLogger(__name__)


@dataclass
class Group:
    """One rollout group: its prompt, completions (texts and ids; a LUFFY expert last), which are
    valid, their advantages, and the outcome the blend weighs."""

    domain: str
    example: Example
    texts: list[str]
    completion_ids: list[list[int]]
    valid: list[bool]
    advantage: list[float]
    outcome: GroupOutcome


@dataclass
class Experience:
    """What ``make`` returns: the groups, and what the step measured while making them. ``dropped``:
    the groups dynamic sampling replaced, not trained on but part of what the step measured."""

    groups: list[Group]
    dropped: list[Group] = field(default_factory=list)
    stats: Sums = field(default_factory=Sums)
    signals: SignalSums | None = None
    timings: dict[str, float] = field(default_factory=dict)


class ExperienceMaker:
    """Rollouts, rewards and advantages for one run (``state``'s policy, ``domains``' rewards)."""

    def __init__(self, state: TrainState, domains: dict[str, BuiltDomain], config: Config) -> None:
        self.state, self.domains, self.config, self.cfg = state, domains, config, config.training
        tok = state.tokenizer
        self.stop_ids = [tok(s, add_special_tokens=False)["input_ids"] for s in self.cfg.stop]
        self.end_ids = end_token_ids(state.policy, tok)
        self.token_patterns = {n: re.compile(p) for n, p in config.logging.token_classes.items()}
        self._prompt_cache: dict[tuple[str | None, str], list[int]] = {}
        self._prefetch_failed: set[str] = set()  # domains whose prefetch raised (warned once)

    def encode_prompt(self, example: Example) -> list[int]:
        """Token ids of ``example``'s prompt (and system message) in the model's prompt format
        (cached: prompts repeat)."""
        key = (example.system, example.prompt)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = self.prompt_ids(example)
        return self._prompt_cache[key]

    def check_prompts_fit(self, max_new_tokens: int, rows: int = 20_000) -> None:
        """A one-line error naming the domain when prompts plus ``max_new_tokens`` are longer than the
        model's positions, or when the model's prompt format cannot take them: found before the first
        step, not at whichever step draws one. Checked: the held-out prompts, and a finite pool's first
        ``rows`` (the rest at generation, as every prompt)."""
        limit = context_limit(self.state.model)
        if limit is None:  # no positions declared: only the prompt format is checked
            for domain in self.domains.values():
                for example in domain.eval_examples()[:1]:
                    self.prompt_text(example)
            return
        for i, domain in enumerate(self.domains.values()):
            size = domain.source.size
            pool = [] if size is None else domain.examples_at(list(range(min(size, rows))))
            examples = domain.eval_examples() + pool
            # a token holds at least one byte of the text (byte-level BPE, SentencePiece with byte fall-back)
            # but for the few the tokenizer adds (BOS, a leading space): only a long text can be over
            long = [e for e in examples if len(self.prompt_text(e).encode()) + 4 + max_new_tokens > limit]
            over = [(n, e) for e in long if (n := len(self.prompt_ids(e))) + max_new_tokens > limit]
            if over:
                longest, example = max(over, key=lambda pair: pair[0])
                lower = " or lower training.max_new_tokens (eval.max_new_tokens)" if longest < limit else ""
                raise ConfigError(  # bad input: the run folder is left as it was
                    f"domain '{domain.name}': {len(over)} of {len(examples)} prompts plus max_new_tokens "
                    f"{max_new_tokens} are longer than the model's {limit} positions (the longest, {longest} tokens: "
                    f"{example.prompt[:60]!r}); drop or shorten them in the data{lower}",
                    field=f"domains[{i}].source",
                )

    def prompt_text(self, example: Example) -> str:
        """``example``'s prompt in the model's prompt format (its chat template, if any), as text."""
        tok, chat = self.state.tokenizer, self.config.model.chat_template
        return apply_prompt_format(tok, example.prompt, chat, example.system, self.config.model.chat_template_kwargs)

    def prompt_ids(self, example: Example) -> list[int]:
        """Token ids of ``example``'s prompt in the model's prompt format, not cached."""
        tok = self.state.tokenizer
        add = not uses_chat_template(tok, self.config.model.chat_template)
        return tok(self.prompt_text(example), add_special_tokens=add)["input_ids"]

    def completion_ids(self, text: str) -> list[int]:
        """Token ids of an expert completion, EOS-terminated like a sampled one."""
        tok = self.state.tokenizer
        return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    def make(self, local: list[tuple[str, Example]], generator: torch.Generator) -> Experience:
        """Sample G completions per local prompt, score them, and compute their advantages."""
        exp = Experience([], signals=SignalSums(list(self.domains)))
        if not local:
            return exp
        ro, texts, completions = self._sample(local, generator, exp)
        rewards, valid, group_texts, group_ids = self._score(local, texts, completions, exp)
        width = max(map(len, rewards))
        r = torch.stack([torch.nn.functional.pad(x, (0, width - len(x))) for x in rewards])  # [n, G(+1)]
        v = torch.stack([torch.nn.functional.pad(x, (0, width - len(x)), value=False) for x in valid])
        adv, zero_var = group_advantages(r, v, self.cfg.advantage)
        self._entropy(local, ro, texts, exp)
        for domain, ex in local:
            if ex.level is not None:  # the mean difficulty level drawn, per domain
                exp.stats.add(f"difficulty/{domain}", float(ex.level))
        self._group_statistics(local, r, v, adv, zero_var, ro, exp)
        exp.groups = [
            Group(
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
        return exp

    def refill(
        self,
        exp: Experience,
        draw: Callable[[str, int], list[tuple[str, Example]]],
        total: Callable[[list[float]], list[float]],
        share: Callable[[list], list],
        generator: torch.Generator,
    ) -> Experience:
        """DAPO dynamic sampling (arXiv:2503.14476), ``training.dynamic_sampling`` rounds at most: each
        round, the groups whose rewards were all equal (over all processes, per domain: ``total``)
        are dropped and as many fresh prompts of their domains drawn (``draw``: the same on every
        process, ``share``: this process's part) and rolled out. The statistics and signals keep
        every rollout made; the groups are the final batch, the replaced ones ``dropped``."""
        resampled = 0.0
        for _ in range(self.cfg.dynamic_sampling):
            counts = total([sum(g.outcome.zero_variance and g.domain == d for g in exp.groups) for d in self.domains])
            if not any(counts):
                break
            prompts = share([p for d, n in zip(self.domains, counts) for p in draw(d, int(n))])
            more = self.make(prompts, generator)
            kept = [g for g in exp.groups if not g.outcome.zero_variance]
            exp.dropped += [g for g in exp.groups if g.outcome.zero_variance]
            exp.stats.merge(more.stats)
            exp.signals.merge(more.signals)
            for k, v in more.timings.items():
                exp.timings[k] = exp.timings.get(k, 0.0) + v
            exp.groups = kept + more.groups
            resampled += len(prompts)
        left = sum(g.outcome.zero_variance for g in exp.groups)
        exp.stats.add("dynamic_sampling/resampled", resampled, 0)  # this process's share: summed when reduced
        exp.stats.add("dynamic_sampling/zero_std_left", float(left), float(len(exp.groups)))
        return exp

    def _sample(self, local, generator, exp: Experience) -> tuple[Rollouts, list[str], list[list[int]]]:
        cfg, st = self.cfg, self.state
        t0 = time.perf_counter()
        prompt_ids = [self.encode_prompt(ex) for _, ex in local for _ in range(cfg.group_size)]
        exp.stats.add("rollouts/generated", float(len(prompt_ids)), 0)  # the compute budget's unit
        with st.acc.autocast(), st.kernels():  # rollouts in the training precision (training.bf16)
            ro = sample(
                st.policy,
                prompt_ids,
                max_new_tokens=cfg.max_new_tokens,
                eos_id=self.end_ids,
                pad_id=st.tokenizer.pad_token_id,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                stop=self.stop_ids,
                generator=generator,
                static_cache=cfg.static_cache,
                graphs=False if st.sharded else cfg.decode_graphs,  # gathered weights move between rollouts
            )
        lengths = ro.completion_mask.sum(1).tolist()  # a completion's tokens are a prefix of its row
        completions = [ids[:n] for ids, n in zip(ro.completion_ids.tolist(), lengths)]
        texts = st.tokenizer.batch_decode(completions, skip_special_tokens=True)
        exp.timings["rollout"] = time.perf_counter() - t0
        if ro.capture_seconds:  # a new CUDA graph shape: paid once, logged that step
            exp.timings["graph_capture"] = ro.capture_seconds
        return ro, texts, completions

    def _score(self, local, texts: list[str], completions: list[list[int]], exp: Experience):
        """Each group's rewards (a LUFFY expert completion joins its group, scored last)."""
        G, stats, signals = self.cfg.group_size, exp.stats, exp.signals
        t0 = time.perf_counter()
        group_texts, group_ids, rewards, valid = [], [], [], []
        groups = []
        for i, (domain, ex) in enumerate(local):
            g_texts, g_ids = texts[i * G : (i + 1) * G], completions[i * G : (i + 1) * G]
            if self.cfg.sft.luffy and ex.expert is not None:
                g_texts, g_ids = g_texts + [ex.expert], g_ids + [self.completion_ids(ex.expert)]
            groups.append((domain, ex, g_texts, g_ids))
        for domain in dict.fromkeys(d for d, _ in local):  # remote components: the step's groups at once
            try:
                self.domains[domain].reward.prefetch([(t, ex) for d, ex, t, _ in groups if d == domain])
            except Exception as exc:  # noqa: BLE001 - a component's prefetch is only a head start: score() answers
                if domain not in self._prefetch_failed:
                    self._prefetch_failed.add(domain)
                    log.warning("reward prefetch of %s failed (%s); scoring group by group", domain, error_summary(exc))
        for domain, ex, g_texts, g_ids in groups:
            result = self.domains[domain].reward.score(g_texts, ex)
            group_texts.append(g_texts)
            group_ids.append(g_ids)
            rewards.append(torch.tensor(result.total, dtype=torch.float32))
            valid.append(torch.tensor(result.valid))
            n = min(G, len(result.total))
            stats.add("reward", float(result.total[:n].sum()), n)
            signals.add(domain, reward=float(result.total[:n].sum()), rollouts=n)
            for part, values in result.parts.items():
                stats.add(f"reward/{domain}/{part}", float(values[:n].sum()), n)
            for part, count in result.errors.items():
                if count:
                    stats.add(f"reward_errors/{domain}/{part}", float(count), 0)
        for domain in dict.fromkeys(d for d, _ in local):
            for event, count in self.domains[domain].reward.events().items():
                stats.add(f"reward_events/{domain}/{event}", float(count), 0)
        exp.timings["reward"] = time.perf_counter() - t0
        return rewards, valid, group_texts, group_ids

    def _group_statistics(self, local, r, v, adv, zero_var, ro: Rollouts, exp: Experience) -> None:
        """Per-group statistics, computed for all groups at once (r, v, adv: [n, G(+1)])."""
        G, stats = self.cfg.group_size, exp.stats
        r = torch.where(v, r, torch.zeros_like(r))
        count = v.float().sum(1)
        mean = r.sum(1) / count.clamp(min=1)
        spread = torch.where(v, r - mean[:, None], torch.zeros_like(r))
        std = ((spread**2).sum(1) / (count - 1).clamp(min=1)).sqrt()  # as torch.std
        std = torch.where(count > 1, std, torch.zeros_like(std))
        sampled = v[:, :G]  # RL is blind to a prompt whose rollouts all score 0 (HPT's switch)
        high = torch.where(sampled, r[:, :G], torch.full_like(r[:, :G], -torch.inf)).amax(1)
        low = torch.where(sampled, r[:, :G], torch.full_like(r[:, :G], torch.inf)).amin(1)
        blind = sampled.any(1) & (high <= 0) & (low == high)
        columns = zip(
            std.tolist(),
            zero_var.float().tolist(),
            torch.where(v, adv.abs(), torch.zeros_like(adv)).sum(1).tolist(),
            count.tolist(),
            blind.tolist(),
        )
        for (domain, ex), (s, zero, adv_abs, n, is_blind) in zip(local, columns):
            stats.add("reward_std", s)
            stats.add("frac_reward_zero_std", zero)
            exp.signals.add(domain, advantage_abs=adv_abs, samples=n, groups=1.0, blind_groups=float(is_blind))
            if ex.level is not None:  # where a ladder's generation goes: groups per level, and those without signal
                for name, value in (("groups", 1.0), ("groups_zero_std", zero), ("groups_blind", float(is_blind))):
                    stats.add(f"{name}/{domain}@{ex.level}", value, 0)
        finished = ro.finished.float()
        lengths = ro.completion_mask.sum(1).float()
        stats.add("completions/mean_length", float(lengths.sum()), len(lengths))
        stats.add("completions/tokens", float(lengths.sum()), 0)
        stats.add("completions/clipped_ratio", float((1 - finished).sum()), len(finished))

    def _entropy(self, local, ro: Rollouts, texts: list[str], exp: Experience) -> None:
        """Entropy of every sampled token, per domain and per token class. Measured on all on-policy
        rows before any loss weighting: zero-variance and gated groups are often the collapsed ones
        the entropy monitor exists to see; a LUFFY expert completion is not sampled, so not counted."""
        G, stats = self.cfg.group_size, exp.stats
        mask = ro.completion_mask.float()
        ent = ro.entropy * mask
        stats.add("entropy", float(ent.sum()), float(mask.sum()))
        per_group = zip(ent.sum(1).view(-1, G).sum(1).tolist(), mask.sum(1).view(-1, G).sum(1).tolist())
        for (domain, _), (total, tokens) in zip(local, per_group):
            exp.signals.add(domain, entropy=total, entropy_tokens=tokens)
        for j, text in enumerate(texts):
            if not any(p.search(text) for p in self.token_patterns.values()):  # cheap check first
                continue
            ids = ro.completion_ids[j][ro.completion_mask[j].bool()].tolist()
            for c, member in token_classes(self.state.tokenizer, ids, self.token_patterns).items():
                cm = torch.tensor(member, dtype=torch.float32)
                if cm.sum() > 0:
                    stats.add(f"entropy_class/{c}", float((ro.entropy[j, : len(member)] * cm).sum()), float(cm.sum()))

    def tracked_outcomes(self, groups: list[Group]) -> list[tuple[str, int | None, int | None, tuple[float, ...]]]:
        """(domain, prompt index, level, rollout rewards) of every group: the scheduler's success-rate
        learnability reads them all; the index and level of the prompts it tracks. Pass the groups
        dynamic sampling dropped too: a pass rate read from the kept groups alone is biased towards
        1/2 (all-right and all-wrong groups are the ones dropped)."""
        return [(g.domain, g.example.index, g.example.level, g.outcome.rewards[: self.cfg.group_size]) for g in groups]

    def rows(self, groups: list[Group], demos: list[tuple[str, Any]], weights: StepWeights) -> tuple[list[Row], Sums]:
        """Loss rows with the blend's weights: each group's valid completions (RL; a LUFFY expert
        last), then the demonstrations of gated prompts and the drawn demonstrations (SFT)."""
        G, stats = self.cfg.group_size, Sums()
        rows: list[Row] = []
        for g, weight in zip(groups, weights.rl):
            prompt = self.encode_prompt(g.example)
            for j, ids in enumerate(g.completion_ids):
                if g.valid[j]:
                    rows.append(Row(prompt, ids, "luffy" if j >= G else "rl", g.domain, weight, g.advantage[j]))
        sft = [(g.domain, g.example, w) for g, w in zip(groups, weights.gated) if w > 0]
        sft += [(d, ex, w) for (d, ex), w in zip(demos, weights.sft)]
        rows += [Row(self.encode_prompt(ex), self.completion_ids(ex.expert), "sft", d, w) for d, ex, w in sft]
        stats.add("sft/samples", float(len(sft)), 0)
        for d in self.domains:  # every domain, every step: where the expert data went
            stats.add(f"sft/samples/{d}", float(sum(domain == d for domain, _, _ in sft)), 0)
        return rows, stats
