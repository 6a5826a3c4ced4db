"""The public Python API (``import spectrum_rl as srl``; ``srl.__all__`` lists it; docs/api.md).

- ``train``: scheduled training, as `spectrum-rl train`, from a config (a YAML file, a mapping,
  ``load_config``'s result) and/or Python objects: a model name or ``PreTrainedModel``,
  ``Domain`` objects holding a ``datasets.Dataset`` (or a list of rows) and a TRL-style reward
  function; returns a ``RunResult``.
- ``recommend_order``: the order query, as `spectrum-rl order`; returns an ``OrderRecommendation``.
- ``Scheduler`` (with ``Domain``, ``Outcome``, ``StepPlan``): the scheduler without our trainer.
- ``load_config``, ``Config``: a run config from YAML or a mapping, validated.
- ``builtin_model``: the folder of a built-in model (shipped with the package).
- The extension points: a base class and a ``register_*`` decorator for policies, mu schedules,
  losses, advantage estimators, reward components and row sources.

Everything else in the package is internal and may change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectrum_rl.config import Config, load_config, locate_error, merge_config, parse_override
from spectrum_rl.errors import ConfigError
from spectrum_rl.models import OBJECT_PREFIX
from spectrum_rl.objectives.advantages import ADVANTAGES
from spectrum_rl.objectives.advantages import AdvantageEstimator as AdvantageEstimator  # re-exported: public
from spectrum_rl.objectives.advantages import AdvantageParams as AdvantageParams
from spectrum_rl.objectives.losses import LOSSES
from spectrum_rl.objectives.losses import LossParams as LossParams
from spectrum_rl.objectives.losses import PolicyLoss as PolicyLoss
from spectrum_rl.objectives.losses import Surrogate as Surrogate
from spectrum_rl.objects import hold
from spectrum_rl.rewards.base import REWARDS
from spectrum_rl.rewards.base import RewardComponent as RewardComponent
from spectrum_rl.rewards.base import RewardSpec as RewardSpec
from spectrum_rl.rewards.base import Scores as Scores
from spectrum_rl.scheduler import driver
from spectrum_rl.scheduler.driver import Domain as Domain
from spectrum_rl.scheduler.driver import Outcome as Outcome
from spectrum_rl.scheduler.mu import MU_SCHEDULES
from spectrum_rl.scheduler.mu import MuParams as MuParams
from spectrum_rl.scheduler.mu import MuSchedule as MuSchedule
from spectrum_rl.scheduler.policies import POLICIES
from spectrum_rl.scheduler.policies import Decision as Decision
from spectrum_rl.scheduler.policies import Policy as Policy
from spectrum_rl.scheduler.policies import PolicyParams as PolicyParams
from spectrum_rl.scheduler.policies import View as View
from spectrum_rl.scheduler.step import StepPlan as StepPlan
from spectrum_rl.sources.base import SOURCES
from spectrum_rl.sources.base import Example as Example
from spectrum_rl.sources.base import RowSource as RowSource
from spectrum_rl.sources.base import SourceContext as SourceContext
from spectrum_rl.sources.base import SourceSpec as SourceSpec

ConfigSource = Config | str | Path | Mapping[str, Any]
"""A run config: loaded (``Config``), a YAML path, or its sections as a mapping."""

register_policy = POLICIES.register
"""``@register_policy("name")`` on a ``Policy`` subclass (with its ``Params``): ``scheduler.policy: name``."""
register_mu_schedule = MU_SCHEDULES.register
"""``@register_mu_schedule("name")`` on a ``MuSchedule`` subclass: ``training.sft.mu: name``."""
register_loss = LOSSES.register
"""``@register_loss("name")`` on a ``PolicyLoss`` subclass: ``training.loss: name``."""
register_advantage = ADVANTAGES.register
"""``@register_advantage("name")`` on an ``AdvantageEstimator`` subclass: ``training.advantage: name``."""
register_reward = REWARDS.register
"""``@register_reward("name")`` on a ``RewardSpec`` subclass: ``{type: name}`` in a domain's ``reward``."""
register_source = SOURCES.register
"""``@register_source("name")`` on a ``SourceSpec`` subclass: ``{type: name}`` as a domain's ``source``."""


@dataclass(frozen=True)
class RunResult:
    """What ``train`` returns: the run folder (metrics.jsonl, eval.jsonl, checkpoints/, final/),
    the final held-out score per domain, and the steps trained."""

    run_dir: Path
    scores: dict[str, float]
    steps: int

    @property
    def mean(self) -> float:
        """The mean held-out score over domains."""
        return sum(self.scores.values()) / max(len(self.scores), 1)


@dataclass(frozen=True)
class PredictedGain:
    """The predicted gain of an order over joint training: ``mean`` and its 95% interval [``low``,
    ``high``] (None without standard errors), in ``unit``."""

    mean: float
    low: float | None
    high: float | None
    unit: str


@dataclass(frozen=True)
class OrderRecommendation:
    """What ``recommend_order`` returns (``as_dict``: what `spectrum-rl order --json` prints).

    order: the domains in the recommended order; rationale: why each sits where it does.
    predicted_gain: over joint training (a uniformly random order); beats_joint: whether its
    interval lies above 0 on transfers the data determine (None without standard errors).
    summary: all of that as one sentence. transfer: the estimate it rests on ({a: {b: T_ab}});
    source: ``probe`` or ``online``; exact: whether every order was scored (else a heuristic).
    """

    order: list[str]
    rationale: dict[str, str]
    predicted_gain: PredictedGain
    beats_joint: bool | None
    summary: str
    transfer: dict[str, dict[str, float]]
    source: str
    exact: bool
    record: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.record


def _resolve(config: ConfigSource, overrides: Sequence[str], base_dir: str | Path | None) -> tuple[Config, Path]:
    """(the loaded config, the folder its relative paths start from: the YAML file's folder, else
    ``base_dir`` or the working directory)."""
    if isinstance(config, Config):
        loaded = load_config(config.model_dump(mode="json"), overrides) if overrides else config
    else:
        loaded = load_config(config, overrides)
    if base_dir is None and isinstance(config, (str, Path)):
        base_dir = Path(config).resolve().parent
    return loaded, Path(base_dir or ".").resolve()


def _domains(config: Config, source: ConfigSource, base_dir: Path, overrides: Sequence[str]) -> list:
    """The config's domains; an error is located in the YAML file when there is one."""
    from spectrum_rl.domains import build_domains

    try:
        return build_domains(config, base_dir)
    except ConfigError as err:
        if isinstance(source, (str, Path)):
            raise locate_error(err, source, [parse_override(o) for o in overrides]) from None
        raise


def _function_component(fn: Callable[..., Any], domain: str) -> dict[str, Any]:
    """A reward function as a `function` component, logged under its name as TRL logs it (a
    ``functools.partial`` under its function's, a callable object under its class's)."""
    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or type(fn).__name__
    return {"type": "function", "key": hold("function", fn, domain)} | ({"name": name} if name.isidentifier() else {})


def _weighted(component: Any, weight: float) -> Any:
    """A reward entry (a component's type name, mapping or spec object) with its weight set."""
    if isinstance(component, RewardSpec):
        return component.model_copy(update={"weight": weight})
    return {**({"type": component} if isinstance(component, str) else dict(component)), "weight": weight}


def _rows_of(domain: Domain) -> list[dict[str, Any]]:
    """``domain.data`` as a list of row dicts: a ``datasets.Dataset``, a pandas DataFrame, a dict of
    columns (``Dataset.from_dict``'s form), or an iterable of mappings; a ``DatasetDict`` is refused
    with its splits named (which one trains?)."""
    data = domain.data
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame: a missing value is None, not NaN
        return data.astype(object).where(data.notna(), None).to_dict("records")
    if hasattr(data, "to_list"):  # datasets.Dataset
        return data.to_list()
    if isinstance(data, Mapping) and data and all(hasattr(v, "to_list") for v in data.values()):  # DatasetDict
        raise ValueError(
            f"domain '{domain.name}': data is a dict of splits ({', '.join(data)}); pass one, e.g. data=ds['train']"
        )
    if isinstance(data, Mapping) and data and all(isinstance(v, (list, tuple)) for v in data.values()):  # columns
        if len({len(v) for v in data.values()}) > 1:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in data.items())
            raise ValueError(f"domain '{domain.name}': data's columns differ in length ({sizes})")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    rows = list(data)
    if not all(isinstance(r, Mapping) for r in rows):
        bad = next(r for r in rows if not isinstance(r, Mapping))
        raise ValueError(
            f"domain '{domain.name}': data must be a datasets.Dataset, a pandas DataFrame, a dict of columns or a "
            f"list of mappings (one per row); found a {type(bad).__name__} row"
        )
    return [dict(r) for r in rows]


def _domain_section(domain: Domain) -> dict[str, Any]:
    """The `domains[i]` entry of a ``Domain`` given as Python objects: its rows and reward are held in
    this process (spectrum_rl/objects.py) and named by key."""
    if domain.data is None or domain.reward is None:
        raise ValueError(f"domain '{domain.name}': train needs its data and its reward")
    if domain.levels is not None or domain.pool is not None:  # the Scheduler's view; train reads the rows
        raise ValueError(
            f"domain '{domain.name}': levels and pool describe a domain to the Scheduler alone; train takes "
            "them from the data: difficulty_field='COLUMN' names the rows' level column (a ladder), and every "
            "row is in the pool"
        )
    rows = _rows_of(domain)
    if rows and domain.answer_field is not None and domain.answer_field not in rows[0]:
        raise ValueError(
            f"domain '{domain.name}': the rows have no '{domain.answer_field}' column (columns: {', '.join(rows[0])}); "
            "name the reference answer's column with answer_field='COLUMN', or answer_field=None when the reward "
            "needs none (a reward function gets every column)"
        )
    # TRL's prompt columns stand for the question when the rows have none (sources/pools.py map_columns)
    trl_column = next((c for c in ("prompt", "messages") if rows and "question" not in rows[0] and c in rows[0]), None)
    distinct = {str(r.get(trl_column or "question")) for r in rows}  # eval holds out questions
    source: dict[str, Any] = {"type": "rows", "key": hold("rows", rows, domain.name)}
    if domain.difficulty_field is not None:
        source["difficulty_field"] = domain.difficulty_field
    one = callable(domain.reward) or isinstance(domain.reward, (str, Mapping, RewardSpec))
    reward = [domain.reward] if one else list(domain.reward)  # one reward, or TRL's list of them
    # TRL's reward_funcs: functions, summed with weight 1 each; YAML components may sit beside them
    reward = [_function_component(r, domain.name) if callable(r) else r for r in reward]
    if domain.reward_weights is not None:  # TRL's reward_weights: one per entry, in order
        weights = list(domain.reward_weights)
        if len(weights) != len(reward):
            raise ValueError(
                f"domain '{domain.name}': {len(weights)} reward_weights for {len(reward)} rewards; give one per reward"
            )
        reward = [_weighted(r, w) for r, w in zip(reward, weights)]
    return {
        "name": domain.name,
        "kind": domain.kind,
        "after": list(domain.after),
        "source": source,
        "prompt": domain.prompt or ("{question}" if trl_column else "{question}\n"),
        "system_prompt": domain.system_prompt,
        "answer_field": domain.answer_field,
        "expert_field": domain.expert_field,
        "eval": {"size": domain.eval_size or max(1, min(100, len(distinct) // 5))},
        "reward": list(reward),
    }


def _with_objects(
    data: dict[str, Any],
    model: Any,
    tokenizer: Any,
    domains: Sequence[Domain] | None,
    sections: Mapping[str, Any],
) -> dict[str, Any]:
    """The config mapping ``data`` with the objects and sections ``train`` was given laid over it."""
    if model is not None:
        if not isinstance(model, str):
            if tokenizer is None:
                raise ValueError("a model object needs its tokenizer: train(model=..., tokenizer=...)")
            model = OBJECT_PREFIX + hold("model", (model, tokenizer))
        data = merge_config(data, {"model": {"name_or_path": model}})
    if domains is not None:
        data = {**data, "domains": [_domain_section(d) for d in domains]}
    return merge_config(data, {k: v for k, v in sections.items() if v})


def train(
    config: ConfigSource | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    domains: Sequence[Domain] | None = None,
    steps: int | None = None,
    prompts_per_step: int | None = None,
    group_size: int | None = None,
    output_dir: str | Path | None = None,
    scheduler: Mapping[str, Any] | None = None,
    sft: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | Path | None = None,
) -> RunResult:
    """Train as `spectrum-rl train` does (progress bar and summary when ``logging.progress``) and
    return the run's folder and final held-out scores.

    ``config``: a run config (YAML path, mapping, ``Config``), or None to build one from the rest.
    ``model``: a model name (``builtin:tiny``, a hub id, a folder) or a ``PreTrainedModel`` (with
    ``tokenizer``; trained in place). ``domains``: ``Domain`` objects with ``data`` and ``reward``
    (in place of the config's). ``steps``, ``prompts_per_step``, ``group_size``: `training:` fields;
    ``output_dir``: the run folder; ``scheduler``, ``sft``, ``training``: those sections as
    mappings (any YAML field), laid over the config. ``overrides``: ``"training.steps=50"``-style
    strings; ``resume``/``overwrite``: continue or replace a run already in the run folder."""
    from spectrum_rl.bootstrap import ensure_builtin_models
    from spectrum_rl.trainer.run import run_training

    if isinstance(config, (str, Path)) and base_dir is None:
        base_dir = Path(config).resolve().parent  # the YAML's relative paths start from its folder
    fields = {"steps": steps, "prompts_per_step": prompts_per_step, "group_size": group_size}
    over = {
        "training": {**(training or {}), **{k: v for k, v in fields.items() if v is not None}},
        "scheduler": dict(scheduler or {}),
        "run": {} if output_dir is None else {"output_dir": str(output_dir)},
    }
    if sft:
        over["training"]["sft"] = dict(sft)
    source = config
    if model is not None or domains is not None or config is None or any(over.values()):
        data = _resolve(config, (), base_dir)[0].model_dump(mode="json") if config is not None else {}
        source = _with_objects(data, model, tokenizer, domains, over)
    loaded, base = _resolve(source, overrides, base_dir)
    built = _domains(loaded, source, base, overrides)
    scores = run_training(
        loaded,
        built,
        resume=resume,
        overwrite=overwrite,
        base_dir=base,
        prepare=lambda: ensure_builtin_models(loaded),
    )
    return RunResult(loaded.output_path, dict(scores), loaded.training.steps)


def recommend_order(
    config: ConfigSource,
    *,
    probe_steps: int = 10,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    base_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> OrderRecommendation:
    """The recommended order of the config's domains (``as_dict()``: what `spectrum-rl order --json`
    prints). Transfer comes from ``run_dir``'s training log when given, else from
    ``run.output_dir/transfer.json`` when it holds a probe of these domains with ``probe_steps``,
    else from a new probe: ``probe_steps`` steps on each domain alone from the same start."""
    from spectrum_rl.analysis import probe

    loaded, base = _resolve(config, overrides, base_dir)
    names = loaded.domain_names
    if run_dir is not None:
        record = probe.transfer_from_run(Path(run_dir), names)
    else:
        cached = loaded.output_path / probe.TRANSFER_FILE
        record = _cached_probe(cached)
        if record is None or record.get("domains") != names or record.get("probe_steps") != probe_steps:
            from spectrum_rl.bootstrap import ensure_builtin_models

            domains = _domains(loaded, config, base, overrides)
            if log:
                log(f"probing transfer: {probe_steps} steps on each of {len(names)} domains")
            ensure_builtin_models(loaded)
            record = probe.probe_transfer(
                loaded,
                domains,
                steps=probe_steps,
                base_dir=base,
                on_probe=None if log is None else (lambda n: log(f"  probe {n}")),
            )
    return _recommendation(probe.recommend_order(loaded, record))


def _recommendation(record: dict[str, Any]) -> OrderRecommendation:
    gain = record["predicted_gain"]
    return OrderRecommendation(
        order=list(record["order"]),
        rationale=dict(record["rationale"]),
        predicted_gain=PredictedGain(gain["mean"], gain["low"], gain["high"], gain["unit"]),
        beats_joint=record["beats_joint"],
        summary=record["summary"],
        transfer=record["transfer"],
        source=record["source"],
        exact=record["exact"],
        record=record,
    )


def _cached_probe(path: Path) -> dict[str, Any] | None:
    """A probe's transfer.json, or None when there is none or it is not a JSON object (probed again).
    It is only ever parsed as JSON: nothing in a run folder is unpickled."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class Scheduler(driver.SchedulerBase):
    __doc__ = driver.SchedulerBase.__doc__

    @classmethod
    def from_config(
        cls, config: ConfigSource, *, overrides: Sequence[str] = (), base_dir: str | Path | None = None
    ) -> Scheduler:
        """The scheduler a run of ``config`` would use (its domains, pools, difficulty ranges,
        `scheduler:` and `training.sft:` sections, and `scheduler.transfer_file`)."""
        from spectrum_rl.domains import planner_for

        loaded, base = _resolve(config, overrides, base_dir)
        return cls.from_planner(planner_for(loaded, _domains(loaded, config, base, overrides), base))


def builtin_model(name: str = "tiny") -> Path:
    """The folder of built-in model ``name`` (``tiny``, ``ladder``), an HF model and tokenizer,
    shipped with the package."""
    from spectrum_rl.bootstrap import ensure_builtin
    from spectrum_rl.models import BUILTIN_MODELS

    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model '{name}'; expected one of {', '.join(BUILTIN_MODELS)}")
    return ensure_builtin(name)
