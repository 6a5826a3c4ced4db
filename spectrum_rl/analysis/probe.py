"""Transfer probes and the recommended order (`spectrum-rl order`).

Probe mode: from the start model, train ``steps`` steps on one domain at a time (weights and
optimizer restored before each probe) and evaluate every domain before and after, giving
``T[i][j] = (after_i[j] - before[j]) / max(|before[j]|, 0.05)``, and its standard error from the
number of eval prompts behind each score (`probe_stderr`). The result, with the scores it came
from, the eval sizes and each domain's entropy trend during its own probe, is cached as
``transfer.json`` in the run directory. With an existing run, its transfer estimate (the online
fit's standard errors with it) and entropy are used instead.

The order (`recommend_order`) uses only the transfers beyond two standard errors of 0 and states
its predicted gain over joint training with a 95% normal interval.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.analysis.phases import binomial_se
from spectrum_rl.config import Config
from spectrum_rl.domains import BuiltDomain
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.continual import normalised_transfer, transfer_scale
from spectrum_rl.scheduler.order import best_order, significant_transfer
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.trainer.checkpoint import load_latest, read_json, read_jsonl
from spectrum_rl.trainer.evaluate import evaluate_state
from spectrum_rl.trainer.loop import Trainer

TRANSFER_FILE = "transfer.json"
_Z95 = 1.959964  # two-sided 95% quantile of the standard normal


def probe_transfer(
    config: Config,
    domains: list[BuiltDomain],
    *,
    steps: int,
    base_dir: Path | None = None,
    on_probe: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``steps`` steps on each domain alone from the same start; return the transfer record:
    ``before``, ``after``, ``transfer`` and its ``stderr`` ({a: {b: value}}, `probe_stderr`),
    ``eval_n`` (eval prompts per domain), ``probe_steps``, ``entropy``."""
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
    eval_n = {d.name: len(d.eval_examples()) for d in domains}  # evaluate_state scores all of them
    A, b = probe_stderr(before, after, eval_n, names)
    record = {
        "domains": names,
        "kinds": {d.name: d.kind for d in domains},
        "probe_steps": steps,
        "eval_n": eval_n,
        "before": before,
        "after": after,
        "transfer": transfer,
        "stderr": _nested(np.sqrt(A**2 + b**2), names),
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
        redo = "delete it, or run `spectrum-rl order CONFIG` to probe again"
        try:
            record = read_json(path, redo)
        except ValueError as exc:
            raise ConfigError(
                f"not a transfer record ({type(exc).__name__}: {str(exc)[:80]}); {redo}", file=str(path)
            ) from None
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
        record = {"transfer": _nested(matrix, names), "source": "online"}
        if planner.get("transfer_stderr") is not None:
            record["stderr"] = _nested(planner["transfer_stderr"], names)
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


def score_stderr(p: float, n: int) -> float:
    """``sqrt(q (1 - q) / n)``, ``q = clip(p, 1/(2n), 1 - 1/(2n))``: the binomial standard error
    (`binomial_se`) of a rate measured on n prompts, kept off 0 at a score of 0 or 1 (none of 50
    prompts solved does not make the rate exactly 0). For a score in [0, 1] that is not 0/1,
    ``p (1 - p)`` bounds its variance, so this is conservative."""
    edge = 1 / (2 * n)
    return binomial_se(min(max(p, edge), 1 - edge), n)


def probe_stderr(
    before: dict[str, float], after: dict[str, dict[str, float]], eval_n: dict[str, int], names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``A[i, j] = se(after_i[j]) / s_j`` and ``b[j] = se(before_j) / s_j``,
    ``s_j = max(|before_j|, 0.05)`` and se = `score_stderr` on ``eval_n[j]`` prompts; the standard
    error of ``T[i][j]`` is ``sqrt(A[i, j]^2 + b[j]^2)``. Before and after are scored on the same
    prompts, so their errors are positively correlated and treating them as independent, as
    this does, overstates the error of their difference: conservative."""
    s = np.array([transfer_scale(before[j]) for j in names])
    b = np.array([score_stderr(before[j], eval_n[j]) for j in names]) / s
    A = np.array([[score_stderr(after[i][j], eval_n[j]) for j in names] for i in names]) / s
    return A, b


def recommend_order(config: Config, record: dict[str, Any]) -> dict[str, Any]:
    """The best order for ``config``'s domains from a transfer record, on the transfers it determines.

    ``used = T`` where ``|T| >= 2 se``, else 0 (`significant_transfer`; all of T when the record has
    no standard errors). The predicted gain is ``score - joint_score`` of `best_order` on ``used``,
    joint training being a uniformly random order. For that order it is affine in T,
    ``gain = sum_ij c_ij used_ij + gain(0)`` (`OrderResult.gain_coefficients`; gain(0) is the
    kind prior), so with every evaluation an independent binomial sample (`probe_stderr`)

        var(gain) = sum_ij c_ij^2 A_ij^2 + sum_j (sum_i c_ij)^2 b_j^2     (over used entries)

    ``before_j`` enters every used entry of column j, hence the second sum; a record without
    the scores (an online fit) gives ``sum_ij c_ij^2 se_ij^2``. The interval is
    ``gain ± 1.96 sqrt(var)``, conditional on the order (chosen on the same probe, so the gain
    leans optimistic); ``beats_joint`` when its lower end is above 0 and some used transfer bears
    on the order (None without standard errors). ``summary`` is that as one sentence.
    """
    names = config.domain_names
    kinds = {t.name: t.kind for t in config.domains}
    T = _matrix(record["transfer"], names)
    se = _matrix(record["stderr"], names) if "stderr" in record else None
    used = T if se is None else significant_transfer(T, se)
    result = best_order(names, used, kinds, {t.name: list(t.after) for t in config.domains}, stderr=se)
    gain = result.score - result.joint_score
    interval, gain_se, beats = None, None, None  # unknown without standard errors
    if se is not None:
        c = np.where(used != 0, result.gain_coefficients, 0.0)
        eval_n = record.get("eval_n")
        if eval_n is not None and "before" in record and "after" in record:
            A, b = probe_stderr(record["before"], record["after"], eval_n, names)
            gain_se = math.sqrt(((c * A) ** 2).sum() + ((c.sum(axis=0) * b) ** 2).sum())
        else:
            gain_se = math.sqrt(((c * se) ** 2).sum())
        interval = (gain - _Z95 * gain_se, gain + _Z95 * gain_se)
        beats = bool(np.any(c)) and interval[0] > 0  # c is 0 on the diagonal: self-transfer orders nothing
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
        "phases": [{"domain": n, "steps": getattr(config.scheduler.policy, "phase_steps", None)} for n in result.order],
        "transfer": _nested(T.round(4), names),
        "transfer_stderr": None if se is None else _nested(se.round(4), names),
        "transfer_used": _nested(used.round(4), names),
        "rationale": rationale,
        "predicted_gain": round(gain, 4),
        "predicted_gain_interval": None if interval is None else [round(v, 4) for v in interval],
        "predicted_gain_stderr": None if gain_se is None else round(gain_se, 4),
        "vs": "joint (uniform random order)",
        "beats_joint": beats,
        "summary": _gain_summary(gain, interval, beats, record, names),
        "eval_n": record.get("eval_n"),
        "probe_steps": record.get("probe_steps"),
        "exact": result.exact,
        "source": record.get("source", "probe"),
    }


def _gain_summary(
    gain: float, interval: tuple[float, float] | None, beats: bool | None, record: dict[str, Any], names: list[str]
) -> str:
    """The predicted gain as one sentence: against what, with its interval and what that rests on."""
    if interval is None:
        return (
            f"predicted gain over joint training: {gain:+.3f} (no standard errors: every transfer is used as "
            "measured, so no interval; joint = a uniformly random order)"
        )
    basis = f"95% normal interval from the {'online fit' if record.get('source') == 'online' else 'probe'}'s"
    basis += " standard errors"
    eval_n = record.get("eval_n")
    if eval_n is not None:
        sizes = {eval_n[n] for n in names}
        if len(sizes) == 1:
            basis += f"; n = {sizes.pop()} eval prompts per domain"
        else:
            basis += "; n = " + ", ".join(f"{eval_n[n]} ({n})" for n in names) + " eval prompts"
        if "probe_steps" in record:
            steps = record["probe_steps"]
            basis += f", {steps} probe step{'' if steps == 1 else 's'}"
    basis += "; transfers within 2 SE counted as 0; joint = a uniformly random order"
    head = (
        "predicted gain over joint training: "
        if beats
        else "no order is predicted to beat joint training: predicted gain "
    )
    return f"{head}{gain:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}] ({basis})"


def _matrix(nested: dict[str, dict[str, float]], names: list[str]) -> np.ndarray:
    """{a: {b: value}} as a [D, D] array in ``names`` order."""
    return np.array([[float(nested[a][b]) for b in names] for a in names])


def _nested(matrix: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """A [D, D] array (or nested list) in ``names`` order as {a: {b: value}}."""
    return {a: {b: float(v) for b, v in zip(names, row)} for a, row in zip(names, matrix)}
