"""`spectrum-rl analyze RUN_DIR`: every diagnostic that a single run directory supports.

Writes ``RUN_DIR/analysis/analysis.json`` (phases per domain and for the mean, KL to base over time,
entropy and token-class entropy series with slopes, update sparsity of ``final/`` against the base
model, and — when asked — a plasticity probe) and PNG plots beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.analysis.phases import PHASE_COLORS, detect_all
from spectrum_rl.analysis.runs import plasticity_probe, run_summary
from spectrum_rl.analysis.sparsity import final_state, model_state, update_sparsity
from spectrum_rl.config import load_config
from spectrum_rl.errors import SpectrumError, did_you_mean
from spectrum_rl.scheduler.continual import continual_metrics
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.trainer.checkpoint import config_base_dir, read_jsonl


def analyze_run(run_dir: Path, *, plasticity_domain: str | None = None, plasticity_steps: int = 16) -> dict[str, Any]:
    """Every diagnostic of one run directory; writes ``analysis/analysis.json`` and plots."""
    run_dir = Path(run_dir)
    s = run_summary(run_dir)
    loss = s["sft_nll"] if s["sft_nll"][0] else None
    config = load_config(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else None
    names = config.domain_names if config is not None else []
    if plasticity_domain and plasticity_domain not in names:  # before any work: the probe trains on it
        raise SpectrumError(
            f"--plasticity: no domain '{plasticity_domain}' in {run_dir / 'config.yaml'}"
            + (f"{did_you_mean(plasticity_domain, names)}; domains: {', '.join(names)}" if names else " (no such file)")
        )
    sizes = {t.name: t.eval.size for t in config.domains} if config is not None else None
    phases = detect_all({**s["eval"], "mean": s["eval_mean"]}, loss=loss, eval_sizes=sizes)
    out: dict[str, Any] = {
        "final": s["final"],
        "final_mean": s["final_mean"],
        "start": s["start"],
        "phases": {d: p.to_dict() for d, p in phases.items()},
        "kl_to_base": s["kl_to_base"],
        "entropy_slope": {d: slope(v[1]) for d, v in s["entropy"].items() if v[1]},
        "entropy_class_slope": {c: slope(v[1]) for c, v in s["entropy_class"].items() if v[1]},
    }
    continual = staged_continual_metrics(run_dir)
    if continual is not None:
        out["continual"] = continual
    if config is not None and (run_dir / "final").exists():
        out["sparsity"] = update_sparsity(
            model_state(config.model.name_or_path), final_state(run_dir / "final")
        ).to_dict()
    if plasticity_domain and config is not None:
        out["plasticity"] = plasticity_probe(
            str(run_dir / "final"),
            config,
            plasticity_domain,
            steps=plasticity_steps,
            base_dir=config_base_dir(run_dir / "config.yaml"),
        )
    folder = run_dir / "analysis"
    folder.mkdir(exist_ok=True)
    (folder / "analysis.json").write_text(json.dumps(out, indent=2))
    _plots(folder, s, phases)
    return out


def staged_continual_metrics(run_dir: Path) -> dict[str, Any] | None:
    """ACC/BWT/FWT of a staged run (one dominant domain per phase, e.g. `sequential` or `bwt`):
    phases are maximal runs of steps with the same highest-weight domain; R[i][j] is the held-out
    score of domain j at the last eval inside phase i (an eval at step s measures the model after
    s steps, so phase i = steps a..b owns evals at a..b), b the scores at step 0. An eval from
    before a phase says nothing about what the phase did: when some phase holds no eval, the
    metrics are "not measured" (evaluate at least once per phase: ``eval.every`` <= phase length)."""
    metrics, evals = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(run_dir / "eval.jsonl")
    phases: list[tuple[str, int, int]] = []  # (domain, first step, last step)
    for m in metrics:
        top = max(m["mixture"], key=m["mixture"].get) if m.get("mixture") else None
        if top is None or max(m["mixture"].values()) < 0.5:
            return None  # not staged: no dominant domain
        if phases and phases[-1][0] == top:
            phases[-1] = (top, phases[-1][1], m["step"])
        else:
            phases.append((top, m["step"], m["step"]))
    order = [d for d, _, _ in phases]
    if len(phases) < 2 or len(set(order)) != len(order) or not evals:
        return None
    inside = [[e for e in evals if first <= e["step"] <= last] for _, first, last in phases]
    missing = [f"{d} (steps {a}-{b})" for (d, a, b), found in zip(phases, inside) if not found]
    if missing:
        return {"order": order, "not_measured": f"no eval inside phase {', '.join(missing)}"}
    R = np.array([[max(found, key=lambda e: e["step"])[f"eval/{d}"] for d in order] for found in inside])
    b = np.array([evals[0][f"eval/{d}"] for d in order])
    return {"order": order, **{k: round(float(v), 4) for k, v in continual_metrics(R, b).items()}}


def _plots(folder: Path, s: dict[str, Any], phases) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("held_out.png", "held-out score", {**s["eval"], "mean": s["eval_mean"]}),
        ("entropy.png", "rollout entropy (nats)", s["entropy"]),
        ("token_class_entropy.png", "token-class entropy (nats)", s["entropy_class"]),
    ]
    if s["kl_to_base"]:
        panels.append(
            (
                "kl_to_base.png",
                "KL(policy || base)",
                {"kl": (list(map(int, s["kl_to_base"])), list(s["kl_to_base"].values()))},
            )
        )
    for name, ylabel, data in panels:
        if not any(v[0] for v in data.values()):
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for label, (steps, values) in data.items():
            ax.plot(steps, values, label=label, lw=2 if label == "mean" else 1)
        if name == "held_out.png":
            for phase, span in phases["mean"].to_dict().items():
                if span:
                    ax.axvspan(span["start"], span["end"], color=PHASE_COLORS[phase], alpha=0.5, label=phase)
        ax.set(xlabel="step", ylabel=ylabel)
        ax.legend(fontsize=7)
        fig.savefig(folder / name, dpi=90, bbox_inches="tight")
        plt.close(fig)
