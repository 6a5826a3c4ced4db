"""The study's self-contained HTML report: claims table, arms table and plots (PNG, base64-embedded)."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from spectrum_rl.analysis.stats import t_interval
from spectrum_rl.study.arms import own_runs
from spectrum_rl.study.curriculum import short_of_budget
from spectrum_rl.study.plots import plots

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
SMOKE_NOTE = "**A smoke run (`--quick`): a reduced grid of 24-step runs. These verdicts are not evidence.**"


def _interval_parts(x: dict | None) -> tuple[float, tuple[float, float] | None, str] | None:
    """(mean, (lo, hi) or None when undefined, ``n=3, t``) of an interval dict; None without a mean.
    ``paired t`` marks a paired difference."""
    if not x or not _finite(x.get("mean")):
        return None
    method = str(x.get("method") or "")
    short = (
        "paired, sign-flip"
        if "sign-flip" in method
        else "paired t"
        if "paired" in method
        else "t"
        if method.startswith("Student t")
        else method
    )
    tail = f"n={x.get('n', '?')}" + (f", {short}" if short else "")
    lo, hi = x.get("ci_low"), x.get("ci_high")
    return x["mean"], ((lo, hi) if _finite(lo) and _finite(hi) else None), tail


def ci_text(x: dict | None) -> str:
    """``0.590 [0.570, 0.610], n=3, t``; ``0.590, n=1, t, no interval`` when the bounds are undefined."""
    parts = _interval_parts(x)
    if parts is None:
        return "–"
    mean, bounds, tail = parts
    return (
        f"{mean:.3f}, {tail}, no interval"
        if bounds is None
        else f"{mean:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}], {tail}"
    )


def _interval_cell(x: dict | None) -> str:
    """The same as an HTML table cell: the mean, and below it the interval with n."""
    parts = _interval_parts(x)
    if parts is None:
        return "–"
    mean, bounds, tail = parts
    below = f"no interval, {tail}" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}] {tail}"
    return f"{mean:.3f}<br><small>{below}</small>"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _interval_methods(summary: dict[str, Any]) -> str:
    """The interval method(s) named in the arms' numbers (summaries before the t-interval name none)."""
    found = {
        x["method"]
        for a in summary["arms"].values()
        for x in [a.get("final_mean"), *(a.get("final") or {}).values()]
        if isinstance(x, dict) and x.get("method")
    }
    return "; ".join(sorted(found)) or "method not recorded in summary.json"


def _final_domain_table(summary: dict[str, Any]) -> str:
    """Arms x domains: final held-out score, mean with its 95% interval over seeds and n."""
    domains = list(dict.fromkeys(d for a in summary["arms"].values() for d in (a.get("final") or {}))) or list(
        summary["domains"]
    )
    head = "".join(f"<th>{html.escape(d)}</th>" for d in domains)
    rows = "".join(
        f"<tr><td>{html.escape(arm)}</td>"
        + "".join(f'<td class="num">{_interval_cell((a.get("final") or {}).get(d))}</td>' for d in domains)
        + "</tr>"
        for arm, a in summary["arms"].items()
    )
    return f"<table><tr><th>arm</th>{head}</tr>{rows}</table>"


def _tested_cell(entry: dict[str, Any]) -> str:
    """A family entry: the difference with its 95% interval and n, then raw and Holm p; bold when
    0 is excluded after adjustment."""
    cell = _interval_cell(entry) + f"<br><small>p {p_text(entry.get('p'))}, Holm {p_text(entry.get('p_holm'))}</small>"
    return f"<b>{cell}</b>" if entry.get("excludes_0") else cell


def p_text(p: float | None) -> str:
    """A p-value as stored (6 decimals): 0 there means below 1e-6."""
    return "n/a" if p is None else "< 1e-06" if p == 0 else f"{p:.3g}"


def _comparison_table(summary: dict[str, Any]) -> str:
    """The study's family of paired comparisons: the final held-out mean (primary family) and each
    domain (secondary family), each with raw and Holm-adjusted p."""
    comparisons = (summary.get("comparisons") or {}).get("comparisons") or {}
    if not comparisons:
        return "<p>The study ran none of the compared pairs of arms.</p>"
    domains = list(next(iter(comparisons.values()))["final"])
    head = "".join(f"<th>{html.escape(d)}</th>" for d in domains)
    rows = "".join(
        f'<tr><td>{html.escape(name)}</td><td class="num">{_tested_cell(c["final_mean"])}</td>'
        + "".join(f'<td class="num">{_tested_cell(c["final"][d])}</td>' for d in domains)
        + "</tr>"
        for name, c in comparisons.items()
    )
    return f"<table><tr><th>difference</th><th>held-out mean</th>{head}</tr>{rows}</table>"


def reached_text(r: dict[str, Any]) -> str:
    """An arm's rollouts to joint's final score: seeds that reached it, restricted mean of the
    budget, ratio to joint's."""
    ratio = "-" if r["ratio_to_joint"] is None else f"{r['ratio_to_joint']:.3f}x"
    return f"{r['reached']}, {r['restricted_mean']:.0f} of {r['budget']}, {ratio}"


def speed_text(s: dict[str, Any]) -> str:
    """The goal's speed endpoint in a phrase ("" for a study budgeted in steps), as the report, the
    docs and the study command print it."""
    ratio = s["curriculum"]["goal"].get("rollouts_ratio")
    if ratio is not None:  # three decimals: a ratio just above the goal's 0.7 must not print as 0.70
        return f"adaptive reaches joint's final score with {ratio:.3f}x joint's rollouts"
    if "rollouts_to_joint_final" in s["curriculum"]:
        return "no rollouts ratio: joint ends no higher than it starts"
    return ""


def goal_text(s: dict[str, Any]) -> str:
    """The curriculum goal in one paragraph (Markdown): the room (gate G6), the primary comparison,
    the rollouts ratio split into what a step costs and how many steps, the best baseline, the verdict."""
    goal = s["curriculum"]["goal"]
    d, best, room = goal["adaptive - joint"], goal["best_baseline"], goal.get("room")
    text = ""
    if room is not None:
        oracle = goal.get("room_oracle", "oracle_static")
        text = f"Room (gate G6): `{oracle} - joint` = {ci_text(room)}" + (
            ", below the goal's margin: **the comparison is void**. " if goal.get("void") else ". "
        )
    if d.get("role") == "primary":
        text += f"`adaptive - joint` = {ci_text(d)}, p {p_text(d['p'])} (the primary comparison, tested alone"
        power = d.get("power") or {}
        if power.get("detectable_at_80pct") is not None:
            text += f"; detectable with 80% power at this n: {power['detectable_at_80pct']:.3f}"
        text += ")"
    else:
        text += f"`adaptive - joint` = {ci_text(d)}, Holm p {p_text(d['p_holm'])}"
    speed = speed_text(s)
    text += f"; {speed}" if speed else ""
    if goal.get("rollouts_ratio") is not None:
        spent = s["curriculum"]["rollouts_to_joint_final"]
        a, j = spent["adaptive"], spent["joint"]
        if a.get("rollouts_per_step") and j.get("rollouts_per_step") and a.get("steps_ratio_to_joint") is not None:
            text += (
                f" (a step of it generates {a['rollouts_per_step'] / j['rollouts_per_step']:.2f}x joint's "
                f"completions, and it takes {a['steps_ratio_to_joint']:.2f}x joint's steps)"
            )
    if best:
        b = goal["adaptive - best_baseline"]
        text += f"; `adaptive - {best}` (the best non-oracle baseline) = {ci_text(b)}, Holm p {p_text(b['p_holm'])}"
    return text + f". Goal ({goal['rule']}): **{'met' if goal['met'] else 'not met'}**."


def _inline_html(markdown: str) -> str:
    """Escaped text with Markdown's inline `code` and **bold** as HTML."""
    out = html.escape(markdown)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _curriculum_section(summary: dict[str, Any]) -> str:
    """The curriculum study: per arm final mean, area under the eval curve, informative share,
    steps and (with a budget in completions) rollouts to joint's final score; the goal's verdict;
    predicted vs realised gain of the order."""
    cur = summary.get("curriculum")
    if not cur:
        return ""
    esc = html.escape
    spent = cur.get("rollouts_to_joint_final") or {}
    rows = []
    for arm, a in summary["arms"].items():
        steps = ", ".join("-" if r is None else str(r) for r in cur["steps_to_joint_final"].get(arm, []))
        cells = "".join(
            f'<td class="num">{_interval_cell(a.get(k))}</td>' for k in ("final_mean", "auc", "informative")
        )
        reached = f"<td>{esc(reached_text(spent[arm]))}</td>" if arm in spent else ""
        rows.append(f"<tr><td>{esc(arm)}</td>{cells}<td>{esc(steps)}</td>{reached}</tr>")
    text = f"<p>{_inline_html(goal_text(summary))}</p>" if cur.get("goal") else ""
    start = summary["arms"].get("joint", {}).get("start_mean")
    if start is not None and cur["joint_final"] <= start:  # the target sits at the start: nothing to reach
        text = (
            f"<p><b>joint ends no higher than it starts ({start:.3f} -> {cur['joint_final']:.3f}), so every arm is at "
            "its final score from the first evaluation: the steps and rollouts to it say nothing here.</b></p>" + text
        )
    if cur.get("order"):
        text += f"<p>{esc(calibration_text(cur['order']))}</p>"
    rollouts_head = "<th>rollouts to joint's final: reached, restricted mean, ratio</th>" if spent else ""
    return (
        "<h2>Curriculum</h2><p>Area: the held-out mean averaged over the run (trapezoids over the eval steps); "
        "informative: the share of rollout groups whose rewards were not all equal; steps: the first eval step "
        f"at which each seed reached joint's final mean {cur['joint_final']:.3f} (- never)"
        + (
            "; rollouts: the completions generated by then, censored at the budget (restricted mean over seeds)"
            if spent
            else ""
        )
        + ".</p>"
        "<table><tr><th>arm</th><th>final held-out mean</th><th>area under the eval curve</th>"
        f"<th>informative groups</th><th>steps to joint's final</th>{rollouts_head}</tr>{''.join(rows)}</table>{text}"
    )


def level_tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per domain whose difficulty is a range: (title, header, rows) of two tables, per arm: the
    held-out score per level at the end (mean ± the 95% t half-width over seeds, n), and where the
    arm's rollout groups went (each level's share of them, and the share of those without signal),
    per level and by distance to the step's frontier. Empty when no run recorded levels."""
    arms = {arm: a.get("levels") or {} for arm, a in summary["arms"].items()}
    keys = sorted({k for levels in arms.values() for k in levels}, key=_level_order)
    tables = []
    for domain in dict.fromkeys(k.rsplit("@", 1)[0] for k in keys):
        own = [k for k in keys if k.rsplit("@", 1)[0] == domain]
        scored = [k for k in own if any("final" in arms[a].get(k, {}) for a in arms)]
        spent = [k for k in own if any("groups_share" in arms[a].get(k, {}) for a in arms)]
        if scored:
            rows = [
                [arm, str(_seeds(levels, scored))] + [_score_cell(levels.get(k, {}).get("final")) for k in scored]
                for arm, levels in arms.items()
            ]
            title = f"`{domain}`: held-out score per level at the end (mean ± 95% Student t half-width over seeds)"
            tables.append((title, ["arm", "n", *("@" + k.rsplit("@", 1)[1] for k in scored)], rows))
        if spent:
            digits = [k for k in spent if k.rsplit("@", 1)[1].isdigit()]
            rows = [
                [arm]
                + [_groups_cell(levels.get(k)) for k in digits]
                + [_groups_cell(_pool(levels, [k for k in spent if _side(k) == side])) for side in (-1, 0, 1)]
                for arm, levels in arms.items()
            ]
            title = (
                f"`{domain}`: where the rollout groups went (share of the arm's groups, pooled over seeds; in "
                "brackets the share of those without signal), per level and against the step's frontier level (the "
                "scheduler's, which an arm that picks its own levels does not follow)"
            )
            head = ["arm", *("@" + k.rsplit("@", 1)[1] for k in digits), "below the frontier", "at it", "above it"]
            tables.append((title, head, rows))
    return tables


def _side(key: str) -> int | None:
    """-1, 0 or 1 for ``domain@frontier-k``, ``domain@frontier``, ``domain@frontier+k``; None for a level."""
    level = key.rsplit("@", 1)[1]
    if not level.startswith("frontier"):
        return None
    offset = int(level.removeprefix("frontier") or 0)
    return (offset > 0) - (offset < 0)


def _pool(levels: dict[str, Any], keys: list[str]) -> dict[str, float] | None:
    """The group shares of several ``levels`` entries as one (None where none has groups)."""
    parts = [levels[k] for k in keys if "groups_share" in levels.get(k, {})]
    if not parts:
        return None
    share = sum(p["groups_share"] for p in parts)
    dead = sum(p["groups_share"] * p["zero_std_share"] for p in parts)
    return {"groups_share": share, "zero_std_share": dead / share if share else 0.0}


def _level_order(key: str) -> tuple[str, int, int]:
    """``domain@3`` before ``domain@frontier-1`` before ``domain@frontier`` before ``domain@frontier+1``."""
    domain, level = key.rsplit("@", 1)
    if level.isdigit():
        return domain, 0, int(level)
    offset = level.removeprefix("frontier")
    return domain, 1, int(offset) if offset else 0


def _seeds(levels: dict[str, Any], keys: list[str]) -> int:
    return max((levels[k]["final"]["n"] for k in keys if "final" in levels.get(k, {})), default=0)


def _score_cell(x: dict | None) -> str:
    parts = _interval_parts(x)
    if parts is None:
        return "–"
    mean, bounds, _ = parts
    return f"{mean:.2f}" if bounds is None else f"{mean:.2f} ± {(bounds[1] - bounds[0]) / 2:.2f}"


def _groups_cell(x: dict | None) -> str:
    if not x or "groups_share" not in x:
        return "–"
    return f"{100 * x['groups_share']:.0f}% ({100 * x['zero_std_share']:.0f}%)"


def _levels_section(summary: dict[str, Any]) -> str:
    esc = html.escape
    out = []
    for title, header, rows in level_tables(summary):
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        out.append(f"<p>{_inline_html(title)}</p><table><tr>{head}</tr>{body}</table>")
    return "<h2>Difficulty levels</h2>" + "".join(out) if out else ""


def _budget_warning(summary: dict[str, Any]) -> str:
    """A warning at the top when runs stopped at the step cap before the budget of completions."""
    short = short_of_budget(summary.get("runs", {}), summary["spec"])
    if not short:
        return ""
    spec = summary["spec"]
    return (
        f"<p><b>Not at equal compute: {len(short)} runs stopped at the step cap ({spec['steps']} steps) before the "
        f"budget of {spec['max_rollouts']} completions</b> ({html.escape(', '.join(short))}); raise study.steps.</p>"
    )


def _primary_section(summary: dict[str, Any], figs: dict[str, str]) -> str:
    """The report's lead: the pre-registered comparison with its n, test, p and the smallest effect
    its n could detect, then the forest plot of every comparison against joint."""
    esc = html.escape
    primary = (summary.get("comparisons") or {}).get("primary")
    text = ""
    if primary:
        power = primary["power"]
        verdict = "0 excluded" if primary["excludes_0"] else "0 not excluded"
        detectable = power["detectable_at_80pct"]
        text = (
            f"<p><b>Primary comparison (pre-registered): {esc(primary['comparison'])} = {esc(ci_text(primary))}, "
            f"p {esc(p_text(primary['p']))} ({esc(primary['method'].split('; ')[-1])}): {verdict} at alpha "
            f"{summary['comparisons']['alpha']}.</b> At n = {primary['n']} and the observed spread of the "
            f"per-seed differences (sd {power['sd_of_differences']}), the smallest difference detectable with 80% "
            f"power is {'-' if detectable is None else f'{detectable:.3f}'}.</p>"
        )
    forest = figs.get("forest", "")
    return f"<h2>Every arm against joint</h2>{text}{forest}" if text or forest else ""


def _course_table(runs: dict[str, list[dict]]) -> str:
    """Per arm and domain the held-out score at the start, its best and its end (means over seeds),
    and the run's BWT (mean over domains of end - best, per seed; its t interval over seeds),
    flagged where the interval lies below 0: the arm lost what it had reached."""
    esc = html.escape
    rows = []
    for arm, seeds in own_runs(runs).items():
        if not seeds:
            continue
        domains = sorted(seeds[0]["eval"])
        cells, bwt = [], []
        for s in seeds:
            bwt.append(float(np.mean([s["eval"][d][1][-1] - max(s["eval"][d][1]) for d in domains])))
        for d in domains:
            start = np.mean([s["eval"][d][1][0] for s in seeds])
            best = np.mean([max(s["eval"][d][1]) for s in seeds])
            end = np.mean([s["eval"][d][1][-1] for s in seeds])
            cells.append(f"{esc(d)} {start:.2f} → {best:.2f} → {end:.2f}")
        iv = t_interval(bwt)
        flag = " <b>(lost beyond the noise)</b>" if iv.below(0) else ""
        bwt_cell = _interval_cell(iv.to_dict()) + flag
        rows.append(f"<tr><td>{esc(arm)}</td><td><small>{'<br>'.join(cells)}</small></td><td>{bwt_cell}</td></tr>")
    return (
        "<h2>What each arm reached and kept</h2><p>Held-out score per domain at the start → its best → the end "
        "(means over seeds), and BWT = mean over domains of (end - best), per seed, with its 95% t interval "
        "over seeds (Lopez-Paz & Ranzato 2017's final-minus-best, over evaluations).</p>"
        f"<table><tr><th>arm</th><th>start → best → end</th><th>BWT</th></tr>{''.join(rows)}</table>"
    )


def calibration_text(checks: dict[str, Any]) -> str:
    """The order query's predictions beside the realised gains, one sentence per order."""
    said = []
    for arm, c in checks.items():
        p, r = c["predicted"], c["realised"]
        bounds = "" if p["low"] is None else f" [{p['low']:+.3f}, {p['high']:+.3f}]"
        verdict = {True: "inside: calibrated", False: "outside: not calibrated", None: "no interval"}[c["calibrated"]]
        name = "the recommended order" if arm == "order" else "its reverse"
        said.append(
            f"{name} (`{arm}`): predicted {p['mean']:+.3f}{bounds} ({p['unit']}), realised `{arm} - joint` = "
            f"{ci_text(r)}, {verdict}"
        )
    return "Order query, predicted against realised gain over joint: " + "; ".join(said) + "."


def _order_summary(order: dict[str, Any]) -> str:
    """The order query's one-line verdict; a summary written before the query spoke in held-out
    units holds only a bare number, shown as such."""
    if "summary" in order:
        return order["summary"]
    gain = order["predicted_gain"]
    return f"predicted gain over joint {gain['mean'] if isinstance(gain, dict) else gain:+.4f}"


def write_report(path: Path, summary: dict[str, Any], runs: dict[str, list[dict]]) -> None:
    """``report.html`` of a study summary (``runs``: its per-seed runs, ``joint`` included)."""
    figs = plots(summary, runs)
    esc = html.escape
    rows = []
    for cid, claim in summary["claims"].items():
        numbers = "<br>".join(f"{esc(k)}: {esc(_shown(v))}" for k, v in claim.items() if k not in _PROSE)
        rows.append(
            f"<tr><td>{cid}</td><td>{esc(CLAIMS[cid])}</td><td><b>{esc(claim['verdict'])}</b></td>"
            f"<td>{esc(claim.get('reason', ''))}</td><td><small>{numbers}</small></td>"
            f"<td><small>{esc(claim['rule'])}</small></td></tr>"
        )
    arm_rows = []
    for arm, a in summary["arms"].items():
        cells = "".join(
            f'<td class="num">{_interval_cell(a.get(k))}</td>'
            for k in ("final_mean", "kl_to_base", "plasticity_auc", "sparsity_unchanged", "rank_ratio")
        )
        arm_rows.append(f"<tr><td>{esc(arm)}</td><td>{a['start_mean']:.3f}</td>{cells}<td>{a['seconds']}</td></tr>")
    order = summary["order"]
    spec = summary["spec"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>spectrum-rl study</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 6px;font-size:13px;vertical-align:top}}code{{font-size:11px}}
td.num{{white-space:nowrap}}small{{color:#555}}img{{max-width:100%;height:auto;display:block;margin:0.5em 0}}</style></head><body>
<h1>spectrum-rl study</h1>{"<p>" + SMOKE_NOTE.replace("**", "") + "</p>" if spec.get("smoke") else ""}
<p>Config <code>{esc(summary["config"])}</code>; {len(summary["arms"])} arms x {_seed_counts(summary)} seeds, {spec["steps"]} steps,
{spec["prompts_per_step"]} prompts x {spec["group_size"]} completions per step; plasticity domain
<code>{esc(summary["plasticity_domain"] or "none")}</code>; total {summary["seconds"]:.0f} s. Numbers are means over seeds; below each, its 95% interval over seeds
({esc(_interval_methods(summary))}) and n, the number of seeds it rests on (no interval where n &lt; 2).</p>
{_budget_warning(summary)}{_primary_section(summary, figs)}
<h2>Claims</h2><table><tr><th>id</th><th>claim</th><th>verdict</th><th>why</th><th>numbers</th><th>rule</th></tr>{"".join(rows)}</table>
<h2>Arms</h2><table><tr><th>arm</th><th>start</th><th>final held-out mean</th><th>KL to base</th><th>plasticity AUC</th>
<th>unchanged (bf16)</th><th>rank ratio</th><th>s/run</th></tr>{"".join(arm_rows)}</table>
{_curriculum_section(summary)}
<h2>Learning curves</h2>
<p>One panel per arm{" (joint is rl_only's runs)" if "rl_only" in runs and "joint" in runs else ""}: held-out mean score, mean over seeds with its 95% Student-t interval
over the seeds at each eval step; the dotted line is the score before training.</p>{figs.get("curves_by_arm", "")}
<p>All arms overlaid (means only), with the phases detected on staged seed 0.</p>{figs["curves"]}
{figs.get("rollouts", "")}
<h2>Final held-out score per domain</h2>{_final_domain_table(summary)}
{_course_table(runs)}
{_levels_section(summary)}
<h2>Paired comparisons (one family, Holm-corrected)</h2>
<p>Final held-out score of one arm minus another, paired by seed over the seeds both ran: mean difference,
its 95% Student-t interval over the per-seed differences, n, the paired test's two-sided p (t; exact sign-flip
below 6 seeds or for discrete differences) and its
Holm-adjusted p. The held-out mean is one family (every arm against joint, spectrum against staged,
chord_mu and adaptive_mu, chord_mu against staged); the per-domain cells are a second family. Bold:
0 excluded after adjustment (Holm p &lt; 0.05).</p>{_comparison_table(summary)}
<h2>Entropy</h2>{figs["entropy"]}{figs.get("token_classes", "")}
<h2>mu and mixture</h2>{figs["mu"]}{figs.get("mixture", "")}
<h2>Transfer and recommended order</h2>{figs["transfer"]}
<p>Recommended order: <b>{esc(" → ".join(order["order"]))}</b>. {esc(_order_summary(order))}</p>
<ul>{"".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in order["rationale"].items())}</ul>
</body></html>"""
    Path(path).write_text(doc)


_PROSE = ("verdict", "rule", "reason")  # a claim's keys that are words, not numbers


def _shown(value: Any) -> str:
    """An interval dict as ``mean [lo, hi], n=..``; anything else as itself."""
    return ci_text(value) if isinstance(value, dict) and "ci_low" in value else str(value)


def _seed_counts(summary: dict[str, Any]) -> str:
    """'3' or '3-5': the range of seeds per arm."""
    counts = sorted({a["final_mean"]["n"] for a in summary["arms"].values()})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def claims_markdown(summary: dict[str, Any]) -> str:
    """The claims and arms tables as Markdown (written beside the report as ``claims.md``)."""
    lines = [SMOKE_NOTE, ""] if summary.get("spec", {}).get("smoke") else []
    lines += ["| claim | verdict | why | measured |", "|---|---|---|---|"]
    for cid, claim in summary["claims"].items():
        numbers = "; ".join(f"{k}: {_shown(v)}" for k, v in claim.items() if k not in _PROSE)
        why = claim.get("reason", "")
        lines.append(f"| {cid} | **{claim['verdict']}** | {why.replace('|', '/')} | {numbers.replace('|', '/')} |")
    lines += [
        "",
        "| arm | start | final held-out mean [95% CI] | KL to base | plasticity AUC | unchanged (bf16) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, a in summary["arms"].items():
        lines.append(
            f"| {arm} | {a['start_mean']:.3f} | {ci_text(a['final_mean'])} | {ci_text(a['kl_to_base'])} | "
            f"{ci_text(a['plasticity_auc'])} | {ci_text(a['sparsity_unchanged'])} |"
        )
    comparisons = (summary.get("comparisons") or {}).get("comparisons") or {}
    if comparisons:
        lines += [
            "",
            "Final held-out mean differences, paired by seed: mean [95% CI], n; the paired test's p and its Holm-",
            "adjusted p over the family of these comparisons; **excludes 0** after adjustment (Holm p < 0.05).",
            "",
            "| difference | held-out mean | p | Holm p | after adjustment |",
            "|---|---|---|---|---|",
        ]
        for name, c in comparisons.items():
            m = c["final_mean"]
            verdict = "**excludes 0**" if m.get("excludes_0") else "contains 0"
            lines.append(f"| {name} | {ci_text(m)} | {p_text(m.get('p'))} | {p_text(m.get('p_holm'))} | {verdict} |")
    return "\n".join(lines) + "\n"
