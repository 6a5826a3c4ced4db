"""The public Python API (``import spectrum_rl as srl``; ``srl.__all__`` lists it; docs/api.md).

- ``load_config``: a run config from a YAML file or a mapping, with ``--set``-style overrides.
- ``train``: scheduled training, as `spectrum-rl train`; returns a ``RunResult``.
- ``recommend_order``: the order query, as `spectrum-rl order --json`.
- ``Scheduler`` (with ``Task``, ``Outcome``, ``StepPlan``): the scheduler without our trainer.
- ``builtin_model``: the folder of a built-in model (built on first use).

Everything else in the package is internal and may change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectrum_rl.config import Config, load_config, locate_error, parse_override
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler import driver
from spectrum_rl.scheduler.driver import Outcome as Outcome  # re-exported: the public names
from spectrum_rl.scheduler.driver import Task as Task
from spectrum_rl.scheduler.step import StepPlan as StepPlan

ConfigSource = Config | str | Path | Mapping[str, Any]
"""A run config: loaded (``Config``), a YAML path, or its sections as a mapping."""


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


def train(
    config: ConfigSource,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | Path | None = None,
) -> RunResult:
    """Train as `spectrum-rl train` does (progress bar and summary when ``logging.progress``) and
    return the run's folder and final held-out scores. ``overrides``: ``"training.steps=50"``-style
    strings; ``resume``/``overwrite``: continue or replace a run already in ``run.output_dir``."""
    from spectrum_rl.bootstrap import ensure_builtin_models
    from spectrum_rl.trainer.run import run_training

    loaded, base = _resolve(config, overrides, base_dir)
    domains = _domains(loaded, config, base, overrides)
    scores = run_training(
        loaded,
        domains,
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
) -> dict[str, Any]:
    """The recommended order of the config's domains (the dict `spectrum-rl order --json` prints:
    ``order``, ``summary``, ``beats_joint``, ``predicted_gain`` and its interval, ``transfer``,
    ``rationale``). Transfer comes from ``run_dir``'s training log when given, else from
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
    return probe.recommend_order(loaded, record)


def _cached_probe(path: Path) -> dict[str, Any] | None:
    """A probe's transfer.json, or None when there is none or it is not a JSON object (probed again).
    It is only ever parsed as JSON: nothing in a run folder is unpickled."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class Scheduler(driver.Scheduler):
    __doc__ = driver.Scheduler.__doc__

    @classmethod
    def from_config(
        cls, config: ConfigSource, *, overrides: Sequence[str] = (), base_dir: str | Path | None = None
    ) -> Scheduler:
        """The scheduler a run of ``config`` would use (its tasks, pools, difficulty ranges,
        `scheduler:` and `training.sft:` sections, and `scheduler.transfer_file`)."""
        from spectrum_rl.domains import planner_for

        loaded, base = _resolve(config, overrides, base_dir)
        return cls.from_planner(planner_for(loaded, _domains(loaded, config, base, overrides), base))


def builtin_model(name: str = "tiny") -> Path:
    """The folder of built-in model ``name`` (``tiny``, ``ladder``), an HF model and tokenizer;
    built on first use (1.5 to 2.5 minutes on 2 CPU cores), then cached."""
    from spectrum_rl.bootstrap import ensure_builtin
    from spectrum_rl.models import BUILTIN_MODELS

    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model '{name}'; expected one of {', '.join(BUILTIN_MODELS)}")
    return ensure_builtin(name)
