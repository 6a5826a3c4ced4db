"""A domain at run time: its row source (tasks/), prompt formatting and hybrid reward (rewards/),
built from one `domains[i]` entry of the config."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import Any

from spectrum_rl.config import AUTO_EXPERT, Config, DomainConfig
from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.rewards import HybridReward, build_hybrid
from spectrum_rl.scheduler.mu import mu_schedule
from spectrum_rl.scheduler.plan import Planner, load_transfer
from spectrum_rl.scheduler.step import DomainPlan, StepPlan
from spectrum_rl.sources.base import Example, RowDict, RowSource, SourceContext, conversation


@dataclass
class BuiltDomain:
    """One task domain: where prompts come from, how they are formatted, how answers are scored
    (``reward``; None where another trainer scores them: spectrum_rl/integrations/trl.py)."""

    name: str
    kind: str
    source: RowSource
    reward: HybridReward | None
    after: tuple[str, ...] = ()
    template: str = "{question}\n"
    system_template: str | None = None  # None: a conversational row's own system message, if any
    answer_field: str | None = "answer"
    expert_field: str | None = "expert"
    sampling: str = "uniform"  # or "pass_rate": the scheduler weighs each prompt of the pool
    _eval: list[Example] | None = field(default=None, repr=False)

    def to_example(self, row: RowDict) -> Example:
        """Format a raw row into an Example (prompt from the template, answer, expert)."""
        answers = _texts(row.get(self.answer_field)) if self.answer_field else ()
        return Example(
            prompt=self.template.format_map(row),
            answer=answers[0] if answers else _text(row.get(self.answer_field)) if self.answer_field else None,
            answers=answers,
            expert=_text(row.get(self.expert_field)) if self.expert_field else None,
            fields=row,
            system=_system_message(row) if self.system_template is None else self.system_template.format_map(row),
        )

    def sample(
        self, n: int, rng: random.Random, weights: list[float] | None = None, levels: list[int] | None = None
    ) -> list[Example]:
        """``n`` training examples drawn with ``rng`` (never from the held-out set), as
        ``draw_rows`` draws them; a pool's examples know their index, a ladder's their level."""
        out = []
        for index, level, row in draw_rows(self.source, n, rng, weights, levels):
            out.append(replace(self.to_example(row), index=index, level=level))
        return out

    def examples_at(self, indices: list[int]) -> list[Example]:
        """The training rows at ``indices`` of a finite pool, each Example knowing its index."""
        return [replace(self.to_example(r), index=i) for i, r in zip(indices, self.source.rows_at(indices))]

    def eval_examples(self) -> list[Example]:
        """The held-out examples (computed once); a ladder's know their level."""
        if self._eval is None:
            rows = self.source.eval_rows()
            levels = self.source.eval_levels() or [None] * len(rows)
            self._eval = [replace(self.to_example(r), level=lv) for r, lv in zip(rows, levels)]
        return self._eval


def draw_rows(
    source: RowSource, n: int, rng: random.Random, weights: list[float] | None = None, levels: list[int] | None = None
) -> list[tuple[int | None, int | None, RowDict]]:
    """``n`` (pool index or None, level or None, row) training draws from ``source``. With ``levels``
    (a source with a difficulty range; one per draw), each at its level. With ``weights`` (one per
    prompt of a finite pool), prompt i is drawn with probability proportional to ``weights[i]``:
    without replacement while the pool has enough prompts of positive weight (successive sampling:
    draws with replacement, each new prompt kept, until n are distinct), else with replacement.
    Otherwise uniformly, as the source draws."""
    if levels is not None:  # one row at each given difficulty level
        return [(None, lv, r) for lv, r in zip(levels, source.rows_at_levels(levels, rng))]
    if weights is None:
        return [(None, None, r) for r in source.train_rows(n, rng)]
    pool = range(len(weights))
    cumulative = list(accumulate(weights))
    if n > sum(w > 0 for w in weights):
        indices = rng.choices(pool, cum_weights=cumulative, k=n)
    else:
        chosen: dict[int, None] = {}  # insertion-ordered: the order of first draws
        for _ in range(100):  # a repeated prompt is drawn again: each new one is weighted among the rest
            if len(chosen) == n:
                break
            chosen.update(dict.fromkeys(rng.choices(pool, cum_weights=cumulative, k=n - len(chosen))))
        else:  # a few prompts hold nearly all the weight: the rest by keys u ** (1 / w) (Efraimidis-Spirakis)
            rest = [i for i in pool if weights[i] > 0 and i not in chosen]
            rest.sort(key=lambda i: rng.random() ** (1.0 / weights[i]), reverse=True)
            chosen.update(dict.fromkeys(rest[: n - len(chosen)]))
        indices = list(chosen)
    return [(i, None, r) for i, r in zip(indices, source.rows_at(indices))]


def planner_for(config: Config, domains: Sequence[BuiltDomain], base_dir: Path | None = None) -> Planner:
    """The Planner of ``config`` over ``domains``: with the transfer matrix of
    ``scheduler.transfer_file`` (relative to ``base_dir``, the config's folder) when it names one, a
    pass-rate tracker per ``sampling: pass_rate`` pool and a difficulty frontier per range knob."""
    tf = config.scheduler.transfer_file
    transfer, stderr = load_transfer(Path(base_dir or ".") / tf, config.domain_names) if tf else (None, None)
    pools = {d.name: d.source.size for d in domains if d.sampling == "pass_rate"}
    ladders = {d.name: d.source.ladder for d in domains if d.source.ladder}
    t = config.training
    return Planner(
        config.kinds,
        config.prerequisites,
        config.scheduler,
        t.sft,
        t.prompts_per_step,
        transfer,
        pools,
        ladders,
        transfer_stderr=stderr,
        steps=t.steps,
        max_rollouts=t.max_rollouts,
        eval_n={d.name: len(d.eval_examples()) for d in domains},
        seed=config.run.seed,
    )


def draw_for_plan(
    domains: Mapping[str, BuiltDomain], plan: StepPlan, rng: random.Random, name: str, n: int
) -> list[tuple[str, Example]]:
    """``n`` (domain, example) pairs of domain ``name`` as ``plan`` asks (``plan_draws``)."""
    weights, levels = plan_draws(plan.domains[name], rng, n)
    return [(name, ex) for ex in domains[name].sample(n, rng, weights, levels)]


def plan_draws(part: DomainPlan, rng: random.Random, n: int) -> tuple[list[float] | None, list[int] | None]:
    """(per-prompt weights, one level per draw) for ``n`` draws of a domain as its plan asks: at
    difficulty levels drawn from its level shares, or by its per-prompt weights, else uniformly."""
    levels = rng.choices(*zip(*part.levels.items()), k=n) if part.levels else None
    return part.prompt_weights, levels


def _system_message(row: RowDict) -> str | None:
    messages = conversation(row) or [{}]
    return messages[0].get("content") if messages[0].get("role") == "system" else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _texts(value: Any) -> tuple[str, ...]:
    """The accepted references of an answer column that holds a list of them, else ()."""
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def build_domain(cfg: DomainConfig, *, base_dir: Path, seed: int) -> BuiltDomain:
    """Build one domain; ConfigErrors carry field paths relative to the domain (``source.path``).

    ``expert_field: auto`` becomes ``expert`` when the rows have that field, else None."""
    ctx = SourceContext(
        base_dir=base_dir, seed=seed, domain=cfg.name, eval_size=cfg.eval.size, eval_split=cfg.eval.split
    )
    source = cfg.source.build(ctx)
    rows = source.eval_rows()[:1] + source.train_rows(1, random.Random(seed))
    expert_field = cfg.expert_field
    if expert_field == AUTO_EXPERT:
        expert_field = "expert" if all("expert" in row for row in rows) else None
    domain = BuiltDomain(
        name=cfg.name,
        kind=cfg.kind,
        source=source,
        reward=build_hybrid(cfg.name, cfg.reward, base_dir),
        after=tuple(cfg.after),
        template=cfg.prompt,
        system_template=cfg.system_prompt,
        answer_field=cfg.answer_field,
        expert_field=expert_field,
        sampling=cfg.sampling,
    )
    if cfg.sampling == "pass_rate" and source.size is None:
        raise ConfigError(
            f"pass_rate sampling needs a finite pool of prompts (file, hub, reasoning_gym); {source.describe()} "
            "is unlimited",
            field="sampling",
        )
    _check_fields(domain, rows)
    _check_reward_fields(cfg, domain, rows)
    return domain


def _check_reward_fields(cfg: DomainConfig, domain: BuiltDomain, rows: list[RowDict]) -> None:
    """Fail at load, not at the first step, when a reward component reads a row field (its ``field``
    or ``tests_field``) that the rows lack, or that is null in some row of a finite pool (the run
    would stop at whichever step drew it); ``answer`` is the domain's answer column."""
    size = domain.source.size
    pool = None if size is None else domain.source.rows_at(list(range(size))) + domain.source.eval_rows()
    for j, spec in enumerate(cfg.reward):
        for attr in ("field", "tests_field"):
            name = getattr(spec, attr, None)
            if not isinstance(name, str):
                continue
            column = domain.answer_field if name == "answer" and domain.answer_field else name
            checked = pool if spec.on_error == "fail" else None  # skip/zero: a null row is handled when drawn
            empty = [r for r in checked or [] if column in r and r[column] is None]
            if empty:
                raise ConfigError(
                    f"{spec.type} reads row field '{column}', which is null in {len(empty)} of {len(pool)} rows "
                    f"(the first with question {str(empty[0].get('question'))[:60]!r}); drop those rows, or set "
                    "this component's on_error: skip to leave them out of the loss",
                    field=f"reward[{j}].{attr}",
                )
            bad = [(r, why) for r in checked or [] if column in r and (why := spec.unusable_reference(r[column]))]
            if bad:
                raise ConfigError(
                    f"{spec.type} reads row field '{column}', which it cannot score against in {len(bad)} of "
                    f"{len(pool)} rows: the first, with question {str(bad[0][0].get('question'))[:60]!r}, "
                    f"{bad[0][1]}; fix or drop those rows, or set this component's on_error: skip",
                    field=f"reward[{j}].{attr}",
                )
            for row in rows:
                if name == "answer" and domain.answer_field is None and "answer" not in row:
                    raise ConfigError(
                        f"{spec.type} reads the row's answer, but the domain has none (answer_field is null); set "
                        "answer_field to the column holding it",
                        field=f"reward[{j}].{attr}",
                    )
                if name != "answer" and name not in row:
                    raise ConfigError(
                        f"{spec.type} reads row field '{name}', which the data lack{did_you_mean(name, row)}; "
                        f"available: {', '.join(sorted(row))}",
                        field=f"reward[{j}].{attr}",
                    )


def build_domains(config: Config, base_dir: Path) -> list[BuiltDomain]:
    """Build every configured domain; errors are nested under ``domains[i].``.

    A domain whose mu schedule trains on demonstrations must have them (an expert field)."""
    domains = []
    for i, cfg in enumerate(config.domains):
        try:
            domains.append(build_domain(cfg, base_dir=base_dir, seed=config.run.seed))
        except ConfigError as err:
            raise err.under(f"domains[{i}].") from None
    check_demonstrations(config, domains)
    return domains


def check_demonstrations(config: Config, domains: Sequence[BuiltDomain], index: Sequence[str] | None = None) -> None:
    """A domain whose mu schedule under ``config`` trains on demonstrations has them (an expert
    field). ``index``: the domain names in the order of the file the error should point into
    (default: ``config``'s own)."""
    names = list(index or config.domain_names)
    for domain in domains:
        schedule = config.training.sft.schedule_of(domain.name)
        if domain.expert_field is None and mu_schedule(schedule).max_mu() > 0:
            raise ConfigError(
                f"domain '{domain.name}' has no expert demonstrations, but its mu schedule "
                f"'{schedule.type}' trains on them; set expert_field to the row field that holds them "
                "(expert_field: answer to imitate the reference answers), or give the domain an RL-only "
                f"schedule (training.sft.per_domain.{domain.name}: rl_only)",
                field=f"domains[{names.index(domain.name)}].expert_field",
            )


def _check_fields(domain: BuiltDomain, rows: list[RowDict]) -> None:
    """Fail early when the template or the answer/expert fields name columns the rows lack."""
    templates = {"prompt": domain.template, "system_prompt": domain.system_template or ""}
    for row in rows:
        available = ", ".join(sorted(row))
        for attr, template in templates.items():
            for _, name, _, _ in string.Formatter().parse(template):
                column = None if name is None else name.split(".")[0].split("[")[0]
                if column is not None and column not in row:
                    raise ConfigError(
                        f"template field '{{{name}}}' is not a row field; available: {available}"
                        + ("; a literal brace is written twice: {{}}" if not column else ""),
                        field=attr,
                    )
                if column and column in (domain.answer_field, domain.expert_field):
                    raise ConfigError(
                        f"template field '{{{name}}}' puts the reference ({column}) into every prompt, so the "
                        "model is shown what it is scored on; a literal brace is written twice ({{answer}}), and "
                        "a column meant as input can be renamed with source.columns",
                        field=attr,
                    )
                if name == "prompt" and conversation(row) is not None:
                    raise ConfigError(
                        "template field '{prompt}' holds the conversation's messages, not text; its user message is "
                        "'{question}' (the chat template adds the rest)",
                        field=attr,
                    )
        for attr in ("answer_field", "expert_field"):
            col = getattr(domain, attr)
            if col is not None and col not in row:
                raise ConfigError(
                    f"row field '{col}' not found in the data; available: {available} "
                    f"(set {attr}: null if the domain has none)",
                    field=attr,
                )
