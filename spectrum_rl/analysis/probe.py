"""Transfer probes and the recommended order (`spectrum-rl order`).

Probe mode: from the start model, train ``steps`` steps on one domain at a time (weights and
optimizer restored before each probe) and evaluate every domain before and after, giving
``T[i][j] = (after_i[j] - before[j]) / max(|before[j]|, 0.05)``. The result, with the scores it
came from and each domain's entropy trend during its own probe, is cached as ``transfer.json``
in the run directory. With an existing run, its transfer estimate and entropy are used instead.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.config import Config
from spectrum_rl.domains import Domain
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.continual import normalised_transfer
from spectrum_rl.scheduler.order import best_order
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.trainer.checkpoint import load_latest, read_jsonl
from spectrum_rl.trainer.evaluate import evaluate_state
from spectrum_rl.trainer.loop import Trainer

TRANSFER_FILE = "transfer.json"


def probe_transfer(
    config: Config,
    domains: list[Domain],
    *,
    steps: int,
    base_dir: Path | None = None,
    on_probe: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``steps`` steps on each domain alone from the same start; return the transfer record."""
    trainer = Trainer(config, domains, config.output_path, base_dir=base_dir)
    start = copy.deepcopy(trainer.policy.state_dict())
    opt_state, lr_state = copy.deepcopy(trainer.state.optimizer.state_dict()), trainer.state.lr_scheduler.state_dict()
    names = [d.name for d in domains]
    before = evaluate_state(trainer.state, domains, config).scores
    after: dict[str, dict[str, float]] = {}
    entropy: dict[str, dict[str, float]] = {}
    for name in names:
        if on_probe:
            on_probe(name)
        trainer.policy.load_state_dict(start)
        trainer.state.optimizer.load_state_dict(opt_state)
        trainer.state.lr_scheduler.load_state_dict(lr_state)
        series = []
        for step in range(steps):
            plan = trainer.planner.plan(step, mixture={n: float(n == name) for n in names})
            series.append(trainer.train_step(plan).get(f"entropy/{name}"))
        after[name] = evaluate_state(trainer.state, domains, config).scores
        values = [v for v in series if v is not None]
        if values:
            entropy[name] = {"start": values[0], "end": values[-1], "trend": slope(values)}
    transfer = {i: normalised_transfer(before, after[i]) for i in names}
    record = {
        "domains": names,
        "kinds": {d.name: d.kind for d in domains},
        "probe_steps": steps,
        "before": before,
        "after": after,
        "transfer": transfer,
        "entropy": entropy,
        "source": "probe",
    }
    if trainer.state.is_main:
        config.output_path.mkdir(parents=True, exist_ok=True)
        (config.output_path / TRANSFER_FILE).write_text(json.dumps(record, indent=2))
    return record


def transfer_from_run(run_dir: Path, names: list[str]) -> dict[str, Any]:
    """The transfer record of an existing run: its transfer.json, else the online estimate in its
    newest checkpoint; entropy trends from its metrics.jsonl."""
    run_dir = Path(run_dir)
    path = run_dir / TRANSFER_FILE
    if path.exists():
        record = json.loads(path.read_text())
    else:
        found = load_latest(run_dir / "checkpoints")
        planner = found[1]["planner"] if found else {}
        matrix = planner.get("transfer")
        if matrix is None:
            raise ConfigError(
                f"run '{run_dir}' has no transfer estimate (no {TRANSFER_FILE}, no online estimate "
                "in its checkpoints); run `spectrum-rl order CONFIG` to probe",
                field="--run",
            )
        record = {"transfer": {a: dict(zip(names, row)) for a, row in zip(names, matrix)}, "source": "online"}
        if planner.get("transfer_stderr") is not None:
            record["stderr"] = {a: dict(zip(names, row)) for a, row in zip(names, planner["transfer_stderr"])}
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = read_jsonl(metrics)
        record["entropy"] = {}
        for n in names:
            series = [m[f"entropy/{n}"] for m in rows if f"entropy/{n}" in m]
            if series:
                record["entropy"][n] = {"start": series[0], "end": series[-1], "trend": slope(series)}
    missing = [n for n in names if n not in record["transfer"]]
    if missing:
        raise ConfigError(f"run '{run_dir}' has no transfer estimate for {', '.join(missing)}", field="--run")
    return record


def recommend_order(config: Config, record: dict[str, Any]) -> dict[str, Any]:
    """The best order for ``config``'s domains given a transfer record (see `best_order`)."""
    names = config.domain_names
    kinds = {t.name: t.kind for t in config.tasks}
    T = np.array([[float(record["transfer"][a][b]) for b in names] for a in names])
    result = best_order(names, T, kinds, {t.name: list(t.after) for t in config.tasks})
    rationale = {}
    for n in result.order:
        why = result.explanations[n]
        e = record.get("entropy", {}).get(n)
        if e is not None:
            direction = "falls" if e["trend"] < 0 else "rises"
            expected = (direction == "falls") == (kinds[n] == "structured")
            why += f"; entropy {direction} under training" + ("" if expected else f" (unusual for {kinds[n]})")
        rationale[n] = why
    return {
        "order": result.order,
        "phases": [{"domain": n, "steps": config.scheduler.phase_steps} for n in result.order],
        "transfer": {a: {b: round(float(T[i, j]), 4) for j, b in enumerate(names)} for i, a in enumerate(names)},
        "rationale": rationale,
        "predicted_gain": round(result.score - result.joint_score, 4),
        "exact": result.exact,
        "source": record.get("source", "probe"),
        **({"transfer_stderr": record["stderr"]} if "stderr" in record else {}),
    }
