"""TRL's GRPOTrainer with the spectrum-rl scheduler composing every generation batch (docs/api.md).

    scheduler = spectrum_rl.Scheduler([Domain("math"), Domain("code")], prompts_per_step=4, policy="adaptive")
    trainer = ScheduledGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(..., max_steps=100),
                                   train_dataset=dataset, scheduler=scheduler, domain_column="domain")

Two hooks, nothing else of TRL changes:

- the train sampler (``ScheduledSampler``, in place of TRL's ``RepeatSampler``): for each generation
  batch it asks the scheduler for a plan and draws ``plan.prompts[d]`` rows of each domain ``d``
  from the dataset (by its level shares where a domain has a difficulty column, by its
  per-prompt weights where it tracks pass rates, else uniformly), then lays them
  out as ``RepeatSampler`` does (each prompt ``num_generations`` times, each batch
  ``num_iterations x steps_per_generation`` times);
- ``_calculate_rewards``: TRL's rewards of the batch (all processes, weighted and summed over
  reward functions as TRL sums them) go to ``scheduler.observe`` as one group per prompt.

The data loader fetches a batch ahead of training, so the plan of a batch reads the rewards of
the batches up to two before it. TRL has no SFT term: a plan's ``mu`` is logged, not applied
(a mu schedule other than ``rl_only`` is an error). The dataset gets a ``spectrum_row`` column
(the row's index), which reward functions receive among their keyword arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from accelerate.utils import gather_object
from torch.utils.data import Sampler
from trl import GRPOTrainer

from spectrum_rl.api import Outcome, Scheduler, StepPlan
from spectrum_rl.domains import draw_rows, plan_draws
from spectrum_rl.sources.pools import PoolSource

ROW_COLUMN = "spectrum_row"


class ScheduledSampler(Sampler[int]):
    """Dataset indices for ``batches`` generation batches, each composed by ``scheduler.plan()``.

    rows: domain -> its dataset rows (pool order: a plan's per-prompt weights index this list);
    levels: domain -> each of those rows' difficulty level, for the domains that have them.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        rows: dict[str, list[int]],
        levels: dict[str, list[int]],
        *,
        num_generations: int,
        repeat_count: int,
        batches: int,
        seed: int,
    ) -> None:
        self.scheduler, self.rows = scheduler, rows
        self.num_generations, self.repeat_count, self.batches, self.seed = num_generations, repeat_count, batches, seed
        # each domain's rows as a pool, so that draws by level or weight are the trainer's own (domains.py)
        self.pools = {
            d: PoolSource([{ROW_COLUMN: i} for i in r], [], f"rows of {d}", levels.get(d)) for d, r in rows.items()
        }
        self.plans: list[StepPlan] = []  # every plan drawn, in order

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed + len(self.plans))  # a second epoch draws afresh, the same on every process
        for _ in range(self.batches):
            plan = self.scheduler.plan()
            self.plans.append(plan)
            chosen = []
            for d, n in plan.prompts.items():
                weights, levels = plan_draws(plan.domains[d], rng, n)
                chosen += [row[ROW_COLUMN] for _, _, row in draw_rows(self.pools[d], n, rng, weights, levels)]
            for _ in range(self.repeat_count):
                for row in chosen:
                    yield from [row] * self.num_generations

    def __len__(self) -> int:
        return self.batches * self.scheduler.prompts_per_step * self.repeat_count * self.num_generations


class ScheduledGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose generation batches ``scheduler`` composes and whose rewards it hears.

    scheduler: a ``spectrum_rl.Scheduler`` over the dataset's domains, its ``prompts_per_step``
        equal to the prompts of one generation batch (``generation_batch_size // num_generations``).
    domain_column: the dataset column naming each row's domain.
    difficulty_column: the column holding each row's integer difficulty level, for the domains the
        scheduler was given ``levels`` for; None: no difficulty curriculum.
    Every other argument is GRPOTrainer's; ``args.max_steps`` must be set (there are no epochs).
    """

    def __init__(
        self,
        *args: Any,
        scheduler: Scheduler,
        domain_column: str = "domain",
        difficulty_column: str | None = None,
        train_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        if train_dataset is None or not hasattr(train_dataset, "column_names"):
            raise ValueError("ScheduledGRPOTrainer needs train_dataset: a datasets.Dataset (indexable rows)")
        for column in (domain_column, difficulty_column):
            if column is not None and column not in train_dataset.column_names:
                raise ValueError(f"train_dataset has no column '{column}'; columns: {train_dataset.column_names}")
        names = train_dataset[domain_column]
        unknown = sorted(set(names) - set(scheduler.domains))
        missing = [d for d in scheduler.domains if d not in set(names)]
        if unknown or missing:
            raise ValueError(
                f"the scheduler's domains ({', '.join(scheduler.domains)}) and column '{domain_column}' differ: "
                + (f"no domain for {unknown}" if unknown else f"no rows of {missing}")
            )
        if scheduler.uses_demonstrations:
            raise ValueError("TRL's GRPOTrainer has no SFT term: give the scheduler an rl_only mu schedule")
        self.scheduler, self.domain_column = scheduler, domain_column
        self.rows: dict[str, list[int]] = {d: [] for d in scheduler.domains}
        for i, d in enumerate(names):
            self.rows[d].append(i)
        wrong = {d: n for d, n in scheduler.pools.items() if n != len(self.rows[d])}
        if wrong:
            raise ValueError(
                "a Task's pool must be its number of rows: "
                + ", ".join(f"'{d}' has {len(self.rows[d])}, pool={n}" for d, n in wrong.items())
            )
        self.levels: dict[str, list[int]] = {}
        if scheduler.ladders:
            if difficulty_column is None:
                raise ValueError("the scheduler has difficulty levels for some tasks: name the difficulty_column")
            values = train_dataset[difficulty_column]
            self.levels = {d: [int(values[i]) for i in r] for d, r in self.rows.items() if d in scheduler.ladders}
        self.pool_index = {i: k for r in self.rows.values() for k, i in enumerate(r)}
        self.row_domain = list(names)
        train_dataset = train_dataset.add_column(ROW_COLUMN, list(range(len(train_dataset))))
        super().__init__(*args, train_dataset=train_dataset, **kwargs)
        if self.args.max_steps <= 0:
            raise ValueError("ScheduledGRPOTrainer needs args.max_steps > 0: the scheduler draws every batch")
        prompts = self.args.generation_batch_size // self.num_generations
        if scheduler.prompts_per_step != prompts:
            raise ValueError(
                f"the scheduler plans {scheduler.prompts_per_step} prompts a step, but a generation batch "
                f"holds {prompts} (generation_batch_size {self.args.generation_batch_size} // num_generations "
                f"{self.num_generations}): build the Scheduler with prompts_per_step={prompts}"
            )
        self.sampler: ScheduledSampler | None = None

    def _get_train_sampler(self, dataset: Any = None) -> ScheduledSampler:
        args = self.args
        every = args.steps_per_generation * self.num_iterations  # micro-batches per generation
        self.sampler = ScheduledSampler(
            self.scheduler,
            self.rows,
            self.levels,
            num_generations=self.num_generations,
            repeat_count=every,
            batches=math.ceil(args.max_steps * args.gradient_accumulation_steps / every),
            seed=args.seed,
        )
        return self.sampler

    def _calculate_rewards(self, inputs: list[dict], prompts: list, completions: list, completion_ids_list: list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:  # the evaluation's rewards are not the scheduler's
            weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
            totals = (rewards_per_func * weights).nansum(dim=1)
            totals[rewards_per_func.isnan().all(dim=1)] = math.nan  # unscorable: left out, as TRL does
            rows = gather_object([int(x[ROW_COLUMN]) for x in inputs])  # the same order as TRL's gather
            self._observe(rows, totals.tolist())
        return rewards_per_func

    def _observe(self, rows: Sequence[int], totals: Sequence[float]) -> None:
        """One Outcome per prompt (``num_generations`` consecutive rows) to the scheduler; the
        batch's per-domain reward and share logged beside TRL's metrics."""
        G, outcomes = self.num_generations, []
        for start in range(0, len(rows), G):
            row = rows[start]
            domain = self.row_domain[row]
            level = self.levels[domain][self.pool_index[row]] if domain in self.levels else None
            rewards = tuple(r for r in totals[start : start + G] if not math.isnan(r))
            outcomes.append(Outcome(domain, rewards, self.pool_index[row], level))
        self.scheduler.observe(outcomes)
        metrics = self._metrics["train"]
        for d in self.scheduler.domains:
            mine = [r for o in outcomes if o.domain == d for r in o.rewards]
            metrics[f"spectrum/share/{d}"].append(sum(o.domain == d for o in outcomes) / max(len(outcomes), 1))
            if mine:
                metrics[f"spectrum/reward/{d}"].append(sum(mine) / len(mine))
