"""The study's self-contained HTML report: claims table, arms table and plots (PNG, base64-embedded)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

CLAIMS = {
    "C1": "SFT-then-RL goes through disruption, readaptation, overfitting; blending SFT inside RL with a "
    "decaying weight smooths this and ends higher (CHORD, arXiv:2508.11408).",
    "C2": "Training that drifts less from the base model keeps plasticity: it learns a new domain faster "
    "(arXiv:2605.12484).",
    "C3": "RL updates a sparse subset of parameters, nearly full rank, overlapping across seeds; SFT updates are "
    "dense (arXiv:2505.11711).",
    "C4": "Structured domains lower entropy under RL, creative ones raise it; structured-before-creative beats "
    "joint training (Omni-Thinker, arXiv:2507.14783).",
    "C5": "Execution-token entropy drops first, then planning-token entropy rises (arXiv:2509.03646).",
}
PHASE_COLORS = {"disruption": "#f4a6a6", "readaptation": "#a6d8f4", "overfitting": "#f4dca6"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _mean_curve(seeds: list[dict], key: str = "eval_mean") -> tuple[list[int], list[float]]:
    steps = seeds[0][key][0]
    values = [s[key][1] for s in seeds if s[key][0] == steps]
    return steps, [sum(v) / len(values) for v in zip(*values)]


def plots(summary: dict[str, Any], runs: dict[str, list[dict]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for arm, seeds in runs.items():
        if arm == "joint":
            continue
        ax.plot(*_mean_curve(seeds), marker="o", ms=3, label=arm)
    staged = runs.get("staged") or next(iter(runs.values()))
    for name, phase in (summary["arms"].get("staged") or {}).get("phases", [{}])[0].get("mean", {}).items():
        if phase:
            ax.axvspan(phase["start"], phase["end"], color=PHASE_COLORS[name], alpha=0.5, label=f"staged: {name}")
    ax.set(
        xlabel="step", ylabel="held-out mean score", title="Learning curves (mean over seeds; phases of staged seed 0)"
    )
    ax.legend(fontsize=7, ncol=2)
    out["curves"] = _png(fig)

    base = runs.get("rl_only") or staged
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for d, (steps, values) in base[0]["entropy"].items():
        if steps:
            ax.plot(steps, values, label=d)
    ax.set(xlabel="step", ylabel="token entropy (nats)", title="Rollout entropy per domain (rl_only, seed 0)")
    ax.legend(fontsize=7)
    out["entropy"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for arm, seeds in runs.items():
        steps, mu = seeds[0]["mu"]
        if steps and any(mu):
            ax.plot(steps, mu, label=arm)
    ax.set(xlabel="step", ylabel="mu (SFT weight)", title="mu over time (seed 0)")
    ax.legend(fontsize=7)
    out["mu"] = _png(fig)

    order_arms = [a for a in ("structured_first", "creative_first", "bwt", "transfer", "adaptive") if a in runs]
    if order_arms:
        fig, axes = plt.subplots(len(order_arms), 1, figsize=(8, 2.2 * len(order_arms)), squeeze=False)
        for ax, arm in zip(axes[:, 0], order_arms):
            s = runs[arm][0]
            ax.stackplot(s["metric_steps"], *s["mixture"].values(), labels=list(s["mixture"]))
            ax.set(title=f"mixture: {arm} (seed 0)", ylim=(0, 1))
        axes[0, 0].legend(fontsize=7, loc="upper right")
        out["mixture"] = _png(fig)

    names = summary["domains"]
    T = [[summary["transfer"][a][b] for b in names] for a in names]
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(T, cmap="RdBu", vmin=-max(map(abs, sum(T, []))) or -1, vmax=max(map(abs, sum(T, []))) or 1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="evaluated domain j", ylabel="probe-trained domain i", title="Transfer T[i][j]")
    fig.colorbar(im)
    out["transfer"] = _png(fig)

    classes = staged[0].get("entropy_class", {}) if staged else {}
    if classes:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for c, (steps, values) in classes.items():
            ax.plot(steps, values, label=c)
        ax.set(xlabel="step", ylabel="entropy (nats)", title="Token-class entropy (staged, seed 0)")
        ax.legend(fontsize=7)
        out["token_classes"] = _png(fig)
    return out


def _ci(x: dict | None) -> str:
    return "–" if not x else f"{x['mean']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"


def write_report(path: Path, summary: dict[str, Any], runs: dict[str, list[dict]]) -> None:
    figs = plots(summary, runs)
    esc = html.escape
    rows = []
    for cid, claim in summary["claims"].items():
        numbers = {k: v for k, v in claim.items() if k not in ("verdict", "rule")}
        rows.append(
            f"<tr><td>{cid}</td><td>{esc(CLAIMS[cid])}</td><td><b>{esc(claim['verdict'])}</b></td>"
            f"<td><code>{esc(str(numbers))}</code></td><td>{esc(claim['rule'])}</td></tr>"
        )
    arm_rows = []
    for arm, a in summary["arms"].items():
        arm_rows.append(
            f"<tr><td>{arm}</td><td>{a['start_mean']:.3f}</td><td>{_ci(a['final_mean'])}</td>"
            f"<td>{_ci(a['kl_to_base'])}</td><td>{_ci(a['plasticity_auc'])}</td>"
            f"<td>{_ci(a['sparsity_unchanged'])}</td><td>{_ci(a['rank_ratio'])}</td><td>{a['seconds']}</td></tr>"
        )
    order = summary["order"]
    spec = summary["spec"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>spectrum-rl study</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 6px;font-size:13px;vertical-align:top}}code{{font-size:11px}}</style></head><body>
<h1>spectrum-rl study</h1>
<p>Config <code>{esc(summary["config"])}</code>; {len(summary["arms"])} arms x {spec["seeds"]} seeds, {spec["steps"]} steps,
{spec["prompts_per_step"]} prompts x {spec["group_size"]} completions per step; plasticity domain
<code>{esc(summary["plasticity_domain"])}</code>; total {summary["seconds"]:.0f} s. Means with 95% bootstrap CIs over seeds.</p>
<h2>Claims</h2><table><tr><th>id</th><th>claim</th><th>verdict</th><th>numbers</th><th>rule</th></tr>{"".join(rows)}</table>
<h2>Arms</h2><table><tr><th>arm</th><th>start</th><th>final held-out mean</th><th>KL to base</th><th>plasticity AUC</th>
<th>unchanged (bf16)</th><th>rank ratio</th><th>s/run</th></tr>{"".join(arm_rows)}</table>
<h2>Learning curves</h2>{figs["curves"]}
<h2>Entropy</h2>{figs["entropy"]}{figs.get("token_classes", "")}
<h2>mu and mixture</h2>{figs["mu"]}{figs.get("mixture", "")}
<h2>Transfer and recommended order</h2>{figs["transfer"]}
<p>Recommended order: <b>{esc(" → ".join(order["order"]))}</b> (predicted gain over joint {order["predicted_gain"]:+.4f}).</p>
<ul>{"".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in order["rationale"].items())}</ul>
</body></html>"""
    Path(path).write_text(doc)


def claims_markdown(summary: dict[str, Any]) -> str:
    """The claims and arms tables as Markdown (written beside the report as ``claims.md``)."""
    lines = ["| claim | verdict | measured |", "|---|---|---|"]
    for cid, claim in summary["claims"].items():
        numbers = "; ".join(f"{k}: {v}" for k, v in claim.items() if k not in ("verdict", "rule"))
        lines.append(f"| {cid} | **{claim['verdict']}** | {numbers.replace('|', '/')} |")
    lines += [
        "",
        "| arm | start | final held-out mean [95% CI] | KL to base | plasticity AUC | unchanged (bf16) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, a in summary["arms"].items():
        lines.append(
            f"| {arm} | {a['start_mean']:.3f} | {_ci(a['final_mean'])} | {_ci(a['kl_to_base'])} | "
            f"{_ci(a['plasticity_auc'])} | {_ci(a['sparsity_unchanged'])} |"
        )
    return "\n".join(lines) + "\n"
