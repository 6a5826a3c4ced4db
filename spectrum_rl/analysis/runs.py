"""Reading a run directory, and the diagnostics that need only its files or its models.

- series: metrics.jsonl / eval.jsonl as per-key step series.
- drift: KL(policy || base) on eval prompts over time (eval.jsonl ``kl_to_base``).
- plasticity: from a trained model, train a short fixed budget on a held-out domain and report
  the steps to reach ``start + delta`` and the area under the learning curve (mean gain over
  the start across eval points) — higher AUC, faster learning (claim C2, arXiv:2605.12484).
- token-class entropy: ``entropy_class/<name>`` series (claim C5, arXiv:2509.03646).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.config import Config
from spectrum_rl.domains import build_domains
from spectrum_rl.errors import ConfigError
from spectrum_rl.trainer.checkpoint import read_jsonl
from spectrum_rl.trainer.loop import Trainer


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` over the records that have it."""
    pairs = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plasticity_probe(
    model_path: str,
    base_config,
    probe_domain: str,
    *,
    steps: int,
    evals: int = 4,
    delta: float = 0.1,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Train ``steps`` RL steps on ``probe_domain`` alone from ``model_path``; learning-curve summary."""
    data = base_config.model_dump(mode="json")
    data["model"]["name_or_path"] = str(model_path)
    data["domains"] = [t for t in data["domains"] if t["name"] == probe_domain]
    for t in data["domains"]:
        t["after"] = []
    data["scheduler"] = {"policy": "joint"}
    data["training"].update(steps=steps, save_every=0)
    data["training"]["sft"] = {"mu": "rl_only"}
    data["eval"].update(every=max(1, steps // evals), kl_to_base=False)
    data["logging"].update(progress=False, trackers=[])
    with tempfile.TemporaryDirectory() as tmp:
        data["run"]["output_dir"] = tmp
        config = Config.model_validate(data)
        Trainer(config, build_domains(config, base_dir or Path.cwd()), Path(tmp)).train()
        steps_, scores = series(read_jsonl(Path(tmp) / "eval.jsonl"), f"eval/{probe_domain}")
    start = scores[0]
    reached = next((s for s, v in zip(steps_, scores) if v >= start + delta), None)
    return {
        "domain": probe_domain,
        "steps": steps_,
        "scores": scores,
        "start": start,
        "steps_to_target": reached,
        "target": start + delta,
        "auc": float(np.mean([v - start for v in scores[1:]])) if len(scores) > 1 else 0.0,
    }


def _informative(metrics: list[dict[str, Any]]) -> float | None:
    """Mean share of a step's rollout groups whose rewards are not all equal (None: no rollouts)."""
    zero_std = series(metrics, "frac_reward_zero_std")[1]
    return round(1 - float(np.mean(zero_std)), 4) if zero_std else None


def _mean_or_none(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _levels(record: dict[str, Any]) -> dict[str, float]:
    """``domain@level`` -> held-out score, from one eval.jsonl record."""
    return {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("eval_level/")}


_GROUP_COUNTS = {"groups": "groups", "groups_zero_std": "zero_std", "groups_blind": "blind"}


def _level_groups(metrics: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Where a ladder's generation went: per ``domain@level``, the groups rolled out over the run
    (dynamic sampling's replaced ones included), those without signal (``zero_std``) and those whose
    rewards were all 0 (``blind``); and the same by distance to the step's frontier level
    (``domain@frontier``, ``domain@frontier-1``, ``domain@frontier+1``, ...)."""
    out: dict[str, dict[str, float]] = {}
    for m in metrics:
        for key, value in m.items():
            name, _, where = key.partition("/")
            if name not in _GROUP_COUNTS or "@" not in where:
                continue
            domain, level = where.rsplit("@", 1)
            slots = [where]
            if (frontier := m.get(f"difficulty/frontier/{domain}")) is not None:
                offset = int(level) - int(frontier)
                slots.append(f"{domain}@frontier" + (f"{offset:+d}" if offset else ""))
            for slot in slots:
                counts = out.setdefault(slot, dict.fromkeys(_GROUP_COUNTS.values(), 0.0))
                counts[_GROUP_COUNTS[name]] += value
    return {k: {c: round(v, 3) for c, v in counts.items()} for k, counts in sorted(out.items())}


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Per-run numbers from its files: final held-out scores, KL series, entropy and class series."""
    run_dir = Path(run_dir)
    evals = read_jsonl(run_dir / "eval.jsonl")
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    if not evals:
        raise ConfigError(
            f"'{run_dir}' has no eval.jsonl: not a run directory, or the run has not evaluated yet", field="RUN_DIR"
        )
    final = evals[-1]
    domains = sorted(k.split("/", 1)[1] for k in final if k.startswith("eval/") and k != "eval/mean")
    out: dict[str, Any] = {
        "final": {d: final[f"eval/{d}"] for d in domains},
        "final_mean": final["eval/mean"],
        "start": {d: evals[0][f"eval/{d}"] for d in domains},
        "kl_to_base": dict(zip(*series(evals, "kl_to_base"))) if "kl_to_base" in final else {},
        "eval": {d: series(evals, f"eval/{d}") for d in domains},
        "eval_mean": series(evals, "eval/mean"),
        # a ladder's held-out score per level (``domain@level``), at the start and at the end, and
        # its groups rolled out per level
        "levels": {"start": _levels(evals[0]), "final": _levels(final), "groups": _level_groups(metrics)},
        # completions generated when each evaluation ran (the compute axis), and in all
        "eval_rollouts": [e.get("rollouts") for e in evals],
        "rollouts": final.get("rollouts"),
        # dynamic sampling: prompts drawn again, and the share of groups still without signal
        "resampled": float(sum(series(metrics, "dynamic_sampling/resampled")[1])),
        "zero_std_left": _mean_or_none(series(metrics, "dynamic_sampling/zero_std_left")[1]),
        "entropy": {d: series(metrics, f"entropy/{d}") for d in domains},
        # fraction of the domain's rollout groups whose rewards were all 0 (no RL signal), per step
        "blind": {d: series(metrics, f"blind/{d}") for d in domains},
        "mu": series(metrics, "mu"),
        "sft_nll": series(metrics, "sft/nll"),
        # demonstrations trained on: the blend's data beside the completions it generated
        "sft_samples": float(sum(series(metrics, "sft/samples")[1])),
        "mixture": {d: [m.get("mixture", {}).get(d, 0.0) for m in metrics] for d in domains},
        # share of the step's rollout groups with a learning signal (rewards not all equal)
        "informative": _informative(metrics),
        "metric_steps": [m["step"] for m in metrics],
    }
    classes = sorted({k.split("/", 1)[1] for m in metrics for k in m if k.startswith("entropy_class/")})
    out["entropy_class"] = {c: series(metrics, f"entropy_class/{c}") for c in classes}
    return out
