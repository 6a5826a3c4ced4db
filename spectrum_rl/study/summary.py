"""The study's summary from its per-seed runs: per-arm aggregates (mean and 95% interval over
seeds), the family of comparisons, the claims and the curriculum goal. Written as
``summary.json``, ``report.html`` and ``claims.md``; ``reanalyze`` recomputes all of it from a
study folder's summary.json without training (``spectrum-rl study --reanalyze``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.analysis.phases import detect_all
from spectrum_rl.analysis.stats import t_interval
from spectrum_rl.errors import SpectrumError
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.study.arms import own_runs, with_joint
from spectrum_rl.study.claims import judge_claims
from spectrum_rl.study.comparisons import compare_family, eval_auc, family_pairs
from spectrum_rl.study.curriculum import curriculum_verdict
from spectrum_rl.study.report import claims_markdown, write_report


def summarize(runs: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> dict[str, Any]:
    """The study's summary from its per-seed runs (``runs[arm][k]`` is seed k) and what the runs
    do not hold (``meta``: spec, config, domains, kinds, eval sizes, transfer, order, seed
    overlaps, seconds): per-arm aggregates, the family of comparisons, the claims. The runs are
    kept in the summary, so ``reanalyze`` recomputes all of it without training."""
    if "joint" in meta["spec"]["arms"]:
        runs = with_joint(runs)  # joint with rl_only's settings is the same run
    arms_summary = {}
    for arm, seeds in runs.items():
        phases = [
            {
                d: p.to_dict()
                for d, p in detect_all(
                    {**s["eval"], "mean": s["eval_mean"]},
                    loss=s["sft_nll"] if s["sft_nll"][0] else None,
                    eval_sizes=meta["eval_sizes"],
                ).items()
            }
            for s in seeds
        ]
        arms_summary[arm] = _aggregate(seeds, phases)
    primary = meta["spec"].get("primary")
    pairs = family_pairs(list(runs))
    if primary and tuple(primary.split(" - ")) not in pairs and all(a in runs for a in primary.split(" - ")):
        pairs.append(tuple(primary.split(" - ")))
    family = compare_family(runs, pairs, primary=primary)
    claims = judge_claims(runs, arms_summary, meta["seed_overlap"], meta["kinds"], family)
    stored = own_runs(runs)
    out = {**meta, "arms": arms_summary, "claims": claims, "comparisons": family, "runs": stored}
    if "joint" in runs:
        oracle = meta["spec"].get("room_oracle", "oracle_static")
        out["curriculum"] = curriculum_verdict(runs, arms_summary, family, meta.get("order"), oracle)
    return out


def write_study(output: Path, summary: dict[str, Any]) -> None:
    """summary.json, report.html and claims.md of a study folder."""
    runs = with_joint(summary["runs"]) if "joint" in summary["arms"] else dict(summary["runs"])
    # readable aggregates, then the per-seed runs on one line each (they are most of the file)
    head = json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1)
    lines = [
        f" {json.dumps(arm)}: {json.dumps(seeds, separators=(',', ':'))}" for arm, seeds in summary["runs"].items()
    ]
    (output / "summary.json").write_text(head[:-2] + ',\n "runs": {\n' + ",\n".join(lines) + "\n }\n}\n")
    write_report(output / "report.html", summary, runs)
    (output / "claims.md").write_text(claims_markdown(summary))


def reanalyze(output: Path) -> dict[str, Any]:
    """Recompute a study folder's aggregates, comparisons, claims and report from the per-seed
    runs its summary.json keeps (no training)."""
    path = Path(output) / "summary.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SpectrumError(f"{path}: cannot be read ({exc})") from None
    if "runs" not in old:
        raise SpectrumError(f"{path}: keeps no per-seed runs (written before they were kept); run the study again")
    meta = {k: old[k] for k in _META_KEYS}
    summary = summarize(old["runs"], meta)
    write_study(Path(output), summary)
    return summary


_META_KEYS = (
    "spec", "config", "plasticity_domain", "domains", "kinds", "eval_sizes", "transfer", "order", "seed_overlap",
    "seconds",
)  # fmt: skip


def _aggregate(seeds: list[dict[str, Any]], phases: list[dict]) -> dict[str, Any]:
    """Mean and 95% Student-t interval over seeds of the per-run numbers, each with its n and
    method (``Interval.to_dict``; ``ci_low``/``ci_high`` are None for a single seed)."""

    def ci(values: list[float]) -> dict[str, float | int | str | None]:
        return t_interval(values).to_dict()

    domains = list(seeds[0]["final"])
    kl = [list(s["kl_to_base"].values())[-1] for s in seeds if s["kl_to_base"]]
    return {
        "final_mean": ci([s["final_mean"] for s in seeds]),
        "auc": ci([eval_auc(s) for s in seeds]),
        "informative": ci(shares)
        if (shares := [s["informative"] for s in seeds if s.get("informative") is not None])
        else None,
        "final": {d: ci([s["final"][d] for s in seeds]) for d in domains},
        "start_mean": round(float(np.mean([s["eval_mean"][1][0] for s in seeds])), 4),
        "kl_to_base": ci(kl) if kl else None,
        "plasticity_auc": ci(aucs)
        if (aucs := [s["plasticity"]["auc"] for s in seeds if s.get("plasticity")])
        else None,
        "plasticity_steps_to_target": [(s.get("plasticity") or {}).get("steps_to_target") for s in seeds],
        "sparsity_unchanged": ci([s["sparsity"]["unchanged_fraction"] for s in seeds]),
        "rank_ratio": ci([s["sparsity"]["mean_rank_ratio"] for s in seeds]),
        "entropy_slope": {d: round(float(np.mean([slope(s["entropy"][d][1]) for s in seeds])), 6) for d in domains},
        "phases": phases,
        "seconds": round(float(np.mean([s["seconds"] for s in seeds])), 1),
        "levels": _levels(seeds),
    }


def _levels(seeds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A ladder per ``domain@level``: the final held-out score (mean and interval over seeds), the
    share of the domain's rollout groups the level took and the share of those without signal,
    pooled over seeds; the groups also by distance to the frontier (``domain@frontier+1``)."""
    finals = [s.get("levels", {}).get("final", {}) for s in seeds]
    pooled: dict[str, dict[str, float]] = {}
    for s in seeds:
        for key, counts in s.get("levels", {}).get("groups", {}).items():
            into = pooled.setdefault(key, dict.fromkeys(counts, 0.0))
            for c, v in counts.items():
                into[c] += v
    made: dict[str, float] = {}  # a domain's groups over every level
    for key, counts in pooled.items():
        domain, level = key.rsplit("@", 1)
        if level.isdigit():
            made[domain] = made.get(domain, 0.0) + counts["groups"]
    out: dict[str, dict[str, Any]] = {}
    for key in sorted({k for f in finals for k in f} | set(pooled)):
        entry = out.setdefault(key, {})
        if values := [f[key] for f in finals if key in f]:
            entry["final"] = t_interval(values).to_dict()
        if key in pooled and (n := pooled[key]["groups"]):
            entry["groups_share"] = round(n / made[key.rsplit("@", 1)[0]], 4)
            entry["zero_std_share"] = round(pooled[key]["zero_std"] / n, 4)
            entry["blind_share"] = round(pooled[key]["blind"] / n, 4)
    return out
