"""The study report's figures, as base64-embedded PNG ``<img>`` tags: the forest plot of every
comparison against joint (the report leads with it), held-out curves against steps and against
rollouts generated, entropy, mu, mixture and the transfer matrix."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from spectrum_rl.analysis.phases import PHASE_COLORS
from spectrum_rl.analysis.stats import t_interval
from spectrum_rl.study.arms import own_runs


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _seed_band(seeds: list[dict], key: str = "eval_mean") -> dict[str, list]:
    """Per eval step, the mean over seeds of ``seeds[k][key] == (steps, values)`` and its 95%
    Student-t interval over the seeds logged at that step (``lo``/``hi`` NaN where n < 2)."""
    at: dict[int, list[float]] = {}
    for s in seeds:
        for step, v in zip(*s[key]):
            if math.isfinite(v):
                at.setdefault(int(step), []).append(float(v))
    band: dict[str, list] = {"steps": [], "mean": [], "lo": [], "hi": [], "n": []}
    for step in sorted(at):
        iv = t_interval(at[step])
        for k, v in zip(band, (step, iv.mean, iv.lo, iv.hi, iv.n)):
            band[k].append(v)
    return band


def _n_label(ns: list[int]) -> str:
    return f"n = {min(ns)}" if min(ns) == max(ns) else f"n = {min(ns)}–{max(ns)}"


def _unflatten(ax, values: list[float]) -> None:
    """A readable y range where every value is the same (matplotlib would zoom into float noise)."""
    if values and max(values) - min(values) < 1e-6:
        ax.set_ylim(min(values) - 0.05, max(values) + 0.05)


def _legend_or_note(ax, note: str) -> None:
    """The legend beside the axes, or ``note`` across them when nothing was drawn."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _curve_arms(runs: dict[str, list[dict]]) -> list[str]:
    """Arms with a held-out curve, each run once (`own_runs`)."""
    return [a for a, seeds in own_runs(runs).items() if seeds and any(s["eval_mean"][0] for s in seeds)]


def _curves_overview(runs: dict[str, list[dict]], summary: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])  # 10 dark colours, then light
    shown: list[float] = []
    for arm in _curve_arms(runs):
        band = _seed_band(runs[arm])
        ax.plot(band["steps"], band["mean"], marker="o", ms=3, label=arm)
        shown += band["mean"]
    _unflatten(ax, shown)
    staged = (summary["arms"].get("staged") or {}).get("phases") or [{}]
    for name, phase in staged[0].get("mean", {}).items():
        if phase:
            ax.axvspan(phase["start"], phase["end"], color=PHASE_COLORS[name], alpha=0.5, label=f"staged: {name}")
    ax.set(xlabel="step", ylabel="held-out mean score", title="All arms: mean over seeds (phases of staged seed 0)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return _png(fig)


def _curves_by_arm(runs: dict[str, list[dict]]) -> str | None:
    """Small multiples: one panel per arm, shared axes, mean ± 95% t-interval over seeds, start dotted."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    arms = _curve_arms(runs)
    if not arms:
        return None
    ncols = min(4, len(arms))
    nrows = math.ceil(len(arms) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols, 2.4 * nrows + 0.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        constrained_layout=True,
    )
    all_ns: list[int] = []
    shown: list[float] = []
    color = "tab:blue"  # one colour: each panel holds one arm, its title names it
    for ax, arm in zip(axes.flat, arms):
        band = _seed_band(runs[arm])
        all_ns += band["n"]
        ax.plot(band["steps"], band["mean"], color=color, marker="o", ms=3, lw=1.5)
        ax.fill_between(band["steps"], band["lo"], band["hi"], color=color, alpha=0.25, lw=0)
        shown += [v for v in band["lo"] + band["hi"] + band["mean"] if v is not None and math.isfinite(v)]
        ax.axhline(band["mean"][0], color="0.3", ls=":", lw=1)
        ax.set_title(f"{arm} ({_n_label(band['n'])})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    _unflatten(axes.flat[0], shown)  # shared y axis
    for ax in axes.flat[len(arms) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out mean score", fontsize=8)
    for ax in axes.flat[len(arms) - ncols : len(arms)]:  # the lowest visible panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("step", fontsize=8)
    handles = [
        Line2D([], [], color=color, marker="o", ms=3, label="mean over seeds"),
        Patch(color=color, alpha=0.25, label="95% t-interval over seeds (none where n < 2)"),
        Line2D([], [], color="0.3", ls=":", label="start score (first eval, mean over seeds)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"Held-out mean score per arm: mean ± 95% t-interval over {_n_label(all_ns)} seeds", fontsize=11)
    return _png(fig)


def _forest(summary: dict[str, Any]) -> str | None:
    """Every comparison against joint: mean difference of the final held-out mean with its interval
    (the primary comparison's own 95% interval; the others' Bonferroni intervals over the family),
    sorted by mean; the primary one marked."""
    import matplotlib.pyplot as plt

    comps = (summary.get("comparisons") or {}).get("comparisons") or {}
    primary = ((summary.get("comparisons") or {}).get("primary") or {}).get("comparison")
    rows = [(name, c["final_mean"]) for name, c in comps.items() if name.endswith(" - joint")]
    rows = sorted((r for r in rows if r[1].get("mean") is not None), key=lambda r: r[1]["mean"])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4), constrained_layout=True)
    for y, (name, c) in enumerate(rows):
        lo, hi = c["adjusted"]["ci_low"], c["adjusted"]["ci_high"]
        is_primary = name == primary
        color = "tab:red" if is_primary else ("black" if c.get("excludes_0") else "tab:blue")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=color, lw=2.5 if is_primary else 1.5)
        ax.plot(c["mean"], y, "D" if is_primary else "o", color=color, ms=7 if is_primary else 5)
        p = c.get("p_holm")
        ax.annotate(
            f"n={c['n']}, p={'-' if p is None else f'{p:.3g}'}",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="center",
        )
    ax.axvline(0, color="0.4", lw=1)
    ax.set_yticks(range(len(rows)), [n + ("  (primary)" if n == primary else "") for n, _ in rows], fontsize=8)
    ax.set_xlabel("difference of the final held-out mean (paired by seed)")
    ax.set_title(
        "Every arm against joint: mean and interval (red: the primary comparison, its 95% interval and "
        "unadjusted p; others: Bonferroni interval, Holm p; black: 0 excluded)",
        fontsize=8,
        loc="left",
        wrap=True,
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _curves_vs_rollouts(runs: dict[str, list[dict]]) -> str | None:
    """Held-out mean against completions generated: each seed's curve interpolated on a common grid,
    mean over seeds with its 95% t interval."""
    import matplotlib.pyplot as plt

    arms = [a for a in _curve_arms(runs) if all(s.get("eval_rollouts") and s.get("rollouts") for s in runs[a])]
    if not arms:
        return None
    budget = max(s["rollouts"] for a in arms for s in runs[a])
    grid = np.linspace(0, budget, 25)
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])
    for arm in arms:
        curves = [
            np.interp(grid, s["eval_rollouts"], s["eval_mean"][1], right=np.nan) for s in runs[arm]
        ]  # a seed that spent less than the grid's end has no value there
        mean, lo, hi = [], [], []
        for column in np.array(curves).T:
            iv = t_interval(column[np.isfinite(column)]) if np.isfinite(column).any() else None
            mean.append(iv.mean if iv else np.nan)
            lo.append(iv.lo if iv else np.nan)
            hi.append(iv.hi if iv else np.nan)
        (line,) = ax.plot(grid, mean, label=f"{arm} (n = {len(curves)})")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
    ax.set(
        xlabel="completions generated (dynamic sampling's included)",
        ylabel="held-out mean score",
        title="Held-out mean against compute: mean over seeds, 95% t interval",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return _png(fig)


def plots(summary: dict[str, Any], runs: dict[str, list[dict]]) -> dict[str, str]:
    """The report's figures as ``<img>`` tags, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {"curves": _curves_overview(runs, summary)}
    for name, figure in (("forest", _forest(summary)), ("rollouts", _curves_vs_rollouts(runs))):
        if figure:
            out[name] = figure
    by_arm = _curves_by_arm(runs)
    if by_arm:
        out["curves_by_arm"] = by_arm

    staged = runs.get("staged") or next(iter(runs.values()))
    base = runs.get("rl_only") or staged
    fig, ax = plt.subplots(figsize=(8, 3.5), constrained_layout=True)
    for d, (steps, values) in base[0]["entropy"].items():
        if steps:
            ax.plot(steps, values, label=d)
    ax.set(xlabel="step", ylabel="token entropy (nats)", title="Rollout entropy per domain (rl_only, seed 0)")
    _legend_or_note(ax, "no rollout entropy logged")
    out["entropy"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5), constrained_layout=True)
    for arm, seeds in runs.items():
        steps, mu = seeds[0]["mu"]
        if steps and any(mu):
            ax.plot(steps, mu, label=arm)
    ax.set(xlabel="step", ylabel="mu (SFT weight)", title="mu over time (seed 0)")
    _legend_or_note(ax, "mu is 0 throughout in every arm (RL only)")
    out["mu"] = _png(fig)

    order_arms = [a for a in ("structured_first", "creative_first", "bwt", "transfer", "adaptive") if a in runs]
    if order_arms:
        fig, axes = plt.subplots(
            len(order_arms),
            1,
            figsize=(8, 1.9 * len(order_arms) + 0.6),
            sharex=True,
            squeeze=False,
            constrained_layout=True,
        )
        for ax, arm in zip(axes[:, 0], order_arms):
            s = runs[arm][0]
            ax.stackplot(s["metric_steps"], *s["mixture"].values(), labels=list(s["mixture"]))
            ax.set_ylim(0, 1)
            ax.set_ylabel("weight", fontsize=8)
            ax.set_title(f"{arm} (seed 0)", fontsize=9, loc="left")
            ax.tick_params(labelsize=8)
        axes[-1, 0].set_xlabel("step")
        axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        fig.suptitle("Domain mixture over steps (ordering arms)", fontsize=11)
        out["mixture"] = _png(fig)

    names = summary["domains"]
    T = [[summary["transfer"][a][b] for b in names] for a in names]
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    im = ax.imshow(T, cmap="RdBu", vmin=-max(map(abs, sum(T, []))) or -1, vmax=max(map(abs, sum(T, []))) or 1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="evaluated domain j", ylabel="probe-trained domain i", title="Transfer T[i][j]")
    fig.colorbar(im)
    out["transfer"] = _png(fig)

    classes = staged[0].get("entropy_class", {}) if staged else {}
    if classes:
        fig, ax = plt.subplots(figsize=(8, 3.5), constrained_layout=True)
        for c, (steps, values) in classes.items():
            ax.plot(steps, values, label=c)
        ax.set(xlabel="step", ylabel="entropy (nats)", title="Token-class entropy (staged, seed 0)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        out["token_classes"] = _png(fig)
    return out
