"""Transfer probes and the recommended order (`spectrum-rl order`).

Probe mode: from the start model, train ``steps`` steps on one domain at a time (weights and
optimizer restored before each probe), with ``seeds`` data and sampling seeds, and evaluate every
domain before and after, giving ``T[i][j] = (mean after_i[j] - before[j]) / max(|before[j]|, 0.05)``
and its standard error: the eval noise of the scores behind it (`probe_stderr`) and the training
noise, the spread of T[i][j] between the seeds (its standard error over them). The result, with the scores it came
from, the eval sizes and each domain's entropy trend during its own probe, is cached as
``transfer.json`` in the run directory. With an existing run, its transfer estimate (the online
fit's standard errors with it) and entropy are used instead.

The order (`recommend_order`) uses only the transfers beyond two standard errors of 0 and states
its predicted gain over joint training in held-out mean units with a 95% normal interval.
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
from spectrum_rl.errors import ConfigError, SpectrumError
from spectrum_rl.scheduler.continual import normalised_transfer, transfer_scale
from spectrum_rl.scheduler.order import best_order, gain_coefficients, significant_transfer
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
    seeds: int = 2,
    base_dir: Path | None = None,
    on_probe: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``steps`` steps on each domain alone from the same start, once per seed; return the
    transfer record: ``before``, ``after`` (mean over seeds) and ``after_seeds``, ``transfer`` and
    its ``stderr`` ({a: {b: value}}: eval and training noise), ``eval_n`` (eval prompts per domain),
    ``probe_steps``, ``probe_seeds``, ``entropy``."""
    trainer = Trainer(config, domains, config.output_path, base_dir=base_dir)
    start = copy.deepcopy(trainer.policy.state_dict())
    opt_state, lr_state = copy.deepcopy(trainer.state.optimizer.state_dict()), trainer.state.lr_scheduler.state_dict()
    names = [d.name for d in domains]
    before = evaluate_state(trainer.state, domains, config).scores
    after_seeds: list[dict[str, dict[str, float]]] = []
    entropy: dict[str, dict[str, float]] = {}
    for k in range(seeds):
        trainer.seed = config.run.seed + k
        after_seeds.append({})
        for name in names:
            if on_probe:
                on_probe(name if seeds == 1 else f"{name} (seed {k})")
            trainer.policy.load_state_dict(start)
            trainer.state.optimizer.load_state_dict(opt_state)
            trainer.state.lr_scheduler.load_state_dict(lr_state)
            series = []
            for step in range(steps):
                trainer.step = step  # each step draws its own prompts
                plan = trainer.planner.plan(step, mixture={n: float(n == name) for n in names})
                series.append(trainer.train_step(plan).get(f"entropy/{name}"))
            after_seeds[k][name] = evaluate_state(trainer.state, domains, config).scores
            values = [v for v in series if v is not None]
            if values and k == 0:
                entropy[name] = {"start": values[0], "end": values[-1], "trend": slope(values)}
    trainer.step = 0
    after = {i: {j: float(np.mean([a[i][j] for a in after_seeds])) for j in names} for i in names}
    transfer = {i: normalised_transfer(before, after[i]) for i in names}
    eval_n = {d.name: len(d.eval_examples()) for d in domains}  # evaluate_state scores all of them
    A, b = probe_stderr(before, after, eval_n, names)
    training = _training_noise({"before": before, "after_seeds": after_seeds}, names)
    record = {
        "domains": names,
        "kinds": {d.name: d.kind for d in domains},
        "probe_steps": steps,
        "eval_n": eval_n,
        "before": before,
        "after": after,
        "after_seeds": after_seeds,
        "probe_seeds": seeds,
        "transfer": transfer,
        "stderr": _nested(np.sqrt(A**2 + b**2 + training**2), names),
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
    if not run_dir.is_dir():
        raise SpectrumError(f"--run {run_dir}: no such run folder")
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
            raise SpectrumError(
                f"--run {run_dir}: no transfer estimate in this run (no {TRANSFER_FILE}, no online estimate "
                "in its checkpoints); run `spectrum-rl order CONFIG` to probe"
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
        raise SpectrumError(f"--run {run_dir}: this run has no transfer estimate for {', '.join(missing)}")
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


SATURATES = 0.9  # a domain its own probe lifts to this held-out score is saturated by any order


def recommend_order(config: Config, record: dict[str, Any]) -> dict[str, Any]:
    """The best order for ``config``'s domains from a transfer record, on the transfers it
    determines, and its predicted gain over joint training in held-out mean units.

    ``used = T`` where ``|T| >= 2 se`` (eval and training noise), else 0 (`significant_transfer`;
    all of T without standard errors). In score units, ``U[i, j] = used[i, j] * s_j`` (``s_j =
    max(|before_j|, 0.05)`` undoes T's normalisation: the change of domain j's held-out score from
    training i), with column j set to 0 where domain j's own probe lifts it to ``SATURATES``: every
    order (joint too) gets there, so no order gains on it. The order maximises the pairwise value
    of `best_order` on U; its gain over a uniformly random order (joint) is affine in U,
    ``sum_ij c_ij U_ij`` (`OrderResult.gain_coefficients`, without the kind prior), and divided by
    the number of domains it is the predicted change of the held-out mean. Its standard error is
    ``sqrt(sum_ij (c_ij se_ij s_j)^2) / D`` over every entry of a column that is not saturated
    (the entries taken as independent; `predicted_gain` splits the error by where it enters), the
    interval ``gain ± 1.96 se``, conditional on the order (chosen on the same probe, so it leans
    optimistic). A record without the probe's scores (an online fit) has no
    ``before``: its gain stays in T's relative units (``unit`` says which).
    """
    names = config.domain_names
    kinds = {t.name: t.kind for t in config.domains}
    T = _matrix(record["transfer"], names)
    se = _matrix(record["stderr"], names) if "stderr" in record else None
    used = T if se is None else significant_transfer(T, se)
    U, se_scores, saturated, unit = _score_units(record, names, used, se)
    result = best_order(names, U, kinds, {t.name: list(t.after) for t in config.domains}, stderr=se)
    prediction = predicted_gain(result.gain_coefficients, U, se_scores, record, names, _live(names, saturated))
    rationale = {}
    for n in result.order:
        why = result.explanations[n]
        e = record.get("entropy", {}).get(n)
        if e is not None:
            direction = "falls" if e["trend"] < 0 else "rises"
            expected = (direction == "falls") == (kinds[n] == "structured")
            why += f"; entropy {direction} under training" + ("" if expected else f" (unusual for {kinds[n]})")
        rationale[n] = why
    gain = {**prediction, "unit": unit}
    beats = None if prediction["low"] is None else bool(np.any(U)) and prediction["low"] > 0
    return {
        "order": result.order,
        "phases": [{"domain": n, "steps": getattr(config.scheduler.policy, "phase_steps", None)} for n in result.order],
        "transfer": _nested(T.round(4), names),
        "transfer_stderr": None if se is None else _nested(se.round(4), names),
        "transfer_used": _nested(used.round(4), names),
        "saturated": saturated,
        "rationale": rationale,
        "predicted_gain": gain,
        "vs": "joint (uniform random order)",
        "beats_joint": beats,
        "summary": _gain_summary(gain, beats, record, names),
        "eval_n": record.get("eval_n"),
        "probe_steps": record.get("probe_steps"),
        "probe_seeds": record.get("probe_seeds"),
        "exact": result.exact,
        "source": record.get("source", "probe"),
    }


def predicted_gain(
    c: np.ndarray, U: np.ndarray, se: np.ndarray | None, record: dict[str, Any], names: list[str], live: np.ndarray
) -> dict[str, float | None]:
    """``{mean, low, high, stderr}`` of an order's gain over joint, ``sum_ij c_ij U_ij / D``, from
    its gain coefficients ``c`` and the score-unit transfers ``U`` (their standard errors ``se``;
    None: no interval). The variance runs over every ``live`` entry (all but saturated columns),
    not only those in use: a transfer within 2 SE is counted as 0 in the mean but is still an
    estimate with its own noise, so an order built on no usable transfer gets a wide interval
    around 0, not [0, 0]. With the probe's scores the variance counts each part of the error where
    it enters:

        var = sum_ij (c_ij A_ij)^2 + sum_j (sum_i c_ij)^2 b_j^2 + sum_ij (c_ij t_ij)^2      (/ D^2)

    A the eval error of an after-score, b that of domain j's score before training, which every
    used entry of column j shares (so it adds in the sum, not in quadrature), t the training noise
    (the spread between probe seeds), all in score units; without them the entries count as
    independent, ``sum_ij (c_ij se_ij)^2``."""
    D = len(U)
    gain = float((c * U).sum() / D)
    c = np.where(live, c, 0.0)
    if se is None:
        return {"mean": round(gain, 4), "low": None, "high": None, "stderr": None}
    if {"before", "after", "eval_n"} <= set(record):
        A, b = probe_stderr(record["before"], record["after"], record["eval_n"], names)
        scale = np.array([transfer_scale(record["before"][j]) for j in names])
        t = _training_noise(record, names) * scale[None, :]
        var = ((c * A * scale) ** 2).sum() + ((c.sum(axis=0) * b * scale) ** 2).sum() + ((c * t) ** 2).sum()
    else:
        var = ((c * se) ** 2).sum()
    gain_se = math.sqrt(float(var)) / D
    return {
        "mean": round(gain, 4),
        "low": round(gain - _Z95 * gain_se, 4),
        "high": round(gain + _Z95 * gain_se, 4),
        "stderr": round(gain_se, 4),
    }


def _training_noise(record: dict[str, Any], names: list[str]) -> np.ndarray:
    """The standard error over probe seeds of each T[i][j] (0 with one seed)."""
    seeds = record.get("after_seeds") or []
    if len(seeds) < 2:
        return np.zeros((len(names), len(names)))
    per_seed = np.array(
        [_matrix({i: normalised_transfer(record["before"], a[i]) for i in names}, names) for a in seeds]
    )
    return per_seed.std(axis=0, ddof=1) / math.sqrt(len(seeds))


def order_prediction(config: Config, record: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """The predicted gain of any ``order`` of ``config``'s domains over joint training, on the same
    score-unit transfers `recommend_order` uses (to set a prediction beside another order's
    realised gain)."""
    names = config.domain_names
    se = _matrix(record["stderr"], names) if "stderr" in record else None
    T = _matrix(record["transfer"], names)
    U, se_scores, saturated, unit = _score_units(record, names, T if se is None else significant_transfer(T, se), se)
    c = gain_coefficients([names.index(n) for n in order])
    gain = predicted_gain(c, U, se_scores, record, names, _live(names, saturated))
    return {**gain, "unit": unit, "order": list(order)}


def _live(names: list[str], saturated: list[str]) -> np.ndarray:
    """The transfer entries that can move an order's gain: every column but a saturated domain's."""
    return np.array([[j not in saturated for j in names] for _ in names])


def _score_units(
    record: dict[str, Any], names: list[str], used: np.ndarray, se: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, list[str], str]:
    """(U, its standard errors, the saturated domains, the unit): the used transfers in held-out
    score units (``used[i, j] * s_j``), the columns of saturated domains zeroed; T's own relative
    units when the record has no probe scores."""
    if "before" not in record or "after" not in record:
        return used.copy(), se, [], "relative"
    scale = np.array([transfer_scale(record["before"][j]) for j in names])[None, :]
    saturated = [j for j in names if record["after"][j][j] >= SATURATES]
    U = used * scale
    for j in saturated:
        U[:, names.index(j)] = 0.0
    return U, None if se is None else se * scale, saturated, "held_out_mean"


def _gain_summary(gain: dict[str, Any], beats: bool | None, record: dict[str, Any], names: list[str]) -> str:
    """The predicted gain as one sentence: in what unit, against what, with its interval and what
    that rests on."""
    unit = "held-out mean" if gain["unit"] == "held_out_mean" else "relative transfer units"
    if gain["low"] is None:
        return (
            f"predicted gain over joint training: {gain['mean']:+.3f} {unit} (no standard errors: every transfer is "
            "used as measured, so no interval; joint = a uniformly random order)"
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
            steps, seeds = record["probe_steps"], record.get("probe_seeds", 1)
            basis += f", {steps} probe step{'' if steps == 1 else 's'} x {seeds} seed{'' if seeds == 1 else 's'}"
    basis += "; transfers within 2 SE counted as 0; joint = a uniformly random order"
    head = (
        "predicted gain over joint training: "
        if beats
        else "no order is predicted to beat joint training: predicted gain "
    )
    return f"{head}{gain['mean']:+.3f} {unit} [{gain['low']:+.3f}, {gain['high']:+.3f}] ({basis})"


def _matrix(nested: dict[str, dict[str, float]], names: list[str]) -> np.ndarray:
    """{a: {b: value}} as a [D, D] array in ``names`` order."""
    return np.array([[float(nested[a][b]) for b in names] for a in names])


def _nested(matrix: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """A [D, D] array (or nested list) in ``names`` order as {a: {b: value}}."""
    return {a: {b: float(v) for b, v in zip(names, row)} for a, row in zip(names, matrix)}
