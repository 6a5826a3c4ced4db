"""Study numbers in the docs, generated from the committed summaries.

A block in a Markdown file::

    <!-- data: docs/study/summary.json arms -->
    ...generated text...
    <!-- /data -->

holds what ``render(summary, kind)`` makes of that summary (path relative to the repository
root). ``python -m spectrum_rl.study.docs_data README.md docs/study.md`` rewrites every block;
``--check`` lists the stale ones and exits 1 (the docs test runs it), so a number in a block can
only come from the data. Kinds: ``setup`` (the command's grid and time), ``arms`` (final
held-out mean per arm), ``domains`` (per-domain final scores), ``claims`` (verdicts and why),
``comparisons`` (the Holm-corrected family), ``verdicts`` (one line), ``excluding`` (the
comparisons that exclude 0 after adjustment, in a sentence), ``curriculum`` (the curriculum
study's arms with area, informative share and steps to joint's final, and its goal), ``goal``
(that goal alone), ``budget`` (every arm against joint at shares of the budget, read off the
curves), ``levels`` (a ladder's held-out score per level and where its rollout groups went), ``cost``
(what a step costs from the share of groups without signal, and what the frontier leaves to
save), ``gates``
(the lines of `spectrum-rl gates`, from a gates.json), ``latest`` (the last text block of a
benchmark's section of benchmarks/README.md, named ``benchmarks/README.md#bench_name.py``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spectrum_rl.config.load import load_config
from spectrum_rl.study.arms import with_joint
from spectrum_rl.study.curriculum import ROLLOUT_GOAL, along_budget, speed_along_budget, step_cost
from spectrum_rl.study.report import calibration_text, ci_text, goal_text, level_tables, p_text, reached_text

BLOCK = re.compile(r"(<!-- data: (\S+) (\w+) -->\n)(.*?)(<!-- /data -->)", re.S)


def _setup(s: dict[str, Any]) -> str:
    spec = s["spec"]
    counts = sorted({a["final_mean"]["n"] for a in s["arms"].values()})
    seeds = "/".join(map(str, counts))
    runs = sum(len(v) for v in s["runs"].values())
    return (
        f"{len(s['runs'])} distinct arms ({', '.join(f'`{a}`' for a in s['runs'])}"
        + ("; `joint` is `rl_only`'s runs" if "joint" in s["arms"] and "joint" not in s["runs"] else "")
        + f"), {seeds} seeds per arm, "
        f"{runs} runs of {spec['steps']} steps ({spec['prompts_per_step']} prompts x {spec['group_size']} "
        f"completions)"
        + (f"; run seeds from {spec['first_seed']}" if spec.get("first_seed") else "")
        + (f"; plasticity domain `{s['plasticity_domain']}`" if s["plasticity_domain"] else "; no plasticity probe")
        + f"; {s['seconds'] / 60:.1f} minutes.\n"
    )


def _arms(s: dict[str, Any]) -> str:
    lines = ["| arm | start | final held-out mean [95% CI], n |", "|---|---|---|"]
    lines += [f"| `{arm}` | {a['start_mean']:.3f} | {ci_text(a['final_mean'])} |" for arm, a in s["arms"].items()]
    return "\n".join(lines) + "\n"


def _domains(s: dict[str, Any]) -> str:
    domains = list(next(iter(s["arms"].values()))["final"])
    lines = ["| arm | " + " | ".join(f"`{d}`" for d in domains) + " |", "|---|" + "---|" * len(domains)]
    for arm, a in s["arms"].items():
        lines.append(f"| `{arm}` | " + " | ".join(ci_text(a["final"][d]) for d in domains) + " |")
    return "\n".join(lines) + "\n"


def _claims(s: dict[str, Any]) -> str:
    lines = ["| claim | verdict | why (the rule's branch and its numbers) |", "|---|---|---|"]
    for cid, c in s["claims"].items():
        lines.append(f"| {cid} | **{c['verdict']}** | {c['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _comparisons(s: dict[str, Any]) -> str:
    family = s["comparisons"]
    primary = (family.get("primary") or {}).get("comparison")
    lines = [
        f"Family of {family['family_size']} paired comparisons of the final held-out mean ({family['method']})"
        + (f"; the pre-registered primary comparison, `{primary}`, is tested alone, outside it" if primary else "")
        + ":",
        "",
        "| difference | mean [95% CI], n | p | Holm p | after adjustment |",
        "|---|---|---|---|---|",
    ]
    for name, c in family["comparisons"].items():
        m = c["final_mean"]
        verdict = "**excludes 0**" if m["excludes_0"] else "contains 0"
        label, holm = (f"`{name}` (primary)", "tested alone") if name == primary else (f"`{name}`", p_text(m["p_holm"]))
        lines.append(f"| {label} | {ci_text(m)} | {p_text(m['p'])} | {holm} | {verdict} |")
    return "\n".join(lines) + "\n"


def _primary(s: dict[str, Any]) -> str:
    """The pre-registered comparison in one line."""
    m = s["comparisons"]["primary"]
    return f"`{m['comparison']}` = {ci_text(m)}, p {p_text(m['p'])} (pre-registered, tested alone).\n"


def _verdicts(s: dict[str, Any]) -> str:
    return "Verdicts: " + ", ".join(f"{cid} **{c['verdict']}**" for cid, c in s["claims"].items()) + ".\n"


def _excluding(s: dict[str, Any]) -> str:
    family = s["comparisons"]["comparisons"]
    out = [(name, c["final_mean"]) for name, c in family.items() if c["final_mean"]["excludes_0"]]
    said = "; ".join(f"`{name}` = {ci_text(m)}, Holm p {p_text(m['p_holm'])}" for name, m in out)
    head = f"Of the {len(family)} paired comparisons of the final held-out mean (Holm-corrected), "
    if not out:
        return head + "none excludes 0 after adjustment.\n"
    verb = "excludes" if len(out) == 1 else "exclude"
    return head + f"{len(out)} {verb} 0 after adjustment: {said}. The others contain 0.\n"


def _gates(s: dict[str, Any]) -> str:
    from spectrum_rl.study.gates import gate_lines  # the command's own lines (imports the trainer)

    return "```\n" + "\n".join(gate_lines(s)) + "\n```\n"


def _curriculum(s: dict[str, Any]) -> str:
    cur = s["curriculum"]
    reach, spent = cur["steps_to_joint_final"], cur.get("rollouts_to_joint_final")
    if spent:  # a budget in rollouts: the compute endpoints
        lines = [
            f"| arm | final held-out mean [95% CI], n | informative groups | prompts resampled per run | "
            f"rollouts to joint's final {cur['joint_final']:.3f}: reached, restricted mean, ratio to joint | "
            "demonstrations trained on per run |",
            "|---|---|---|---|---|---|",
        ]
        for arm, a in s["arms"].items():
            info = cur["informative"][arm]
            informative = ci_text(a["informative"]) if a.get("informative") else "n/a"
            lines.append(
                f"| `{arm}` | {ci_text(a['final_mean'])} | {informative} | {info['resampled_per_run']:.0f} | "
                f"{reached_text(spent[arm])} | {info.get('demonstrations_per_run', 0):.0f} |"
            )
    else:
        lines = [
            f"| arm | final held-out mean [95% CI], n | area under the eval curve | informative groups | "
            f"steps to joint's final {cur['joint_final']:.3f} (per seed; - never) |",
            "|---|---|---|---|---|",
        ]
        for arm, a in s["arms"].items():
            steps = ", ".join("-" if r is None else str(r) for r in reach.get(arm, []))
            informative = ci_text(a["informative"]) if a.get("informative") else "n/a"
            lines.append(f"| `{arm}` | {ci_text(a['final_mean'])} | {ci_text(a['auc'])} | {informative} | {steps} |")
    if cur.get("goal"):
        lines.append("\n" + goal_text(s))
    if cur.get("order"):
        lines.append("\n" + calibration_text(cur["order"]))
    return "\n".join(lines) + "\n"


def _levels(s: dict[str, Any]) -> str:
    """Per domain whose difficulty is a range: the held-out score per level and where the groups went."""
    parts = []
    for title, header, rows in level_tables(s):
        lines = [title + ":", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join([f"`{row[0]}`", *row[1:]]) + " |" for row in rows]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) if parts else "No run of this study recorded difficulty levels.\n"


def _cost(s: dict[str, Any]) -> str:
    """What a step costs, from the share of groups without signal (``curriculum.step_cost``; the
    rounds of dynamic sampling read from the study's config file)."""
    c = step_cost(s, load_config(Path(s["config"])).training.dynamic_sampling)
    if c is None:
        return "No cost per step to explain: the study's trained domain is not one ladder whose groups were counted.\n"
    a, b = c["primary"]
    series = " + ".join(["1", "d"] + [f"d^{r}" for r in range(2, c["rounds"] + 1)])
    shown = {arm: x for arm, x in c["arms"].items() if not (arm == "rl_only" and "joint" in c["arms"])}  # one run set
    per_arm = "; ".join(f"`{arm}` {x['d']:.2f}, {x['estimate']:.1f} ({x['measured']:.1f})" for arm, x in shown.items())
    at = c["all_at_frontier"]
    text = (
        f"With P prompts of G completions and {c['rounds']} rounds of dynamic sampling, a step whose groups are "
        f"each without signal with chance d generates about P x G x ({series}) completions. Per arm, d (its groups "
        f"pooled over seeds and levels), that estimate and, in brackets, the completions it generated per step: "
        f"{per_arm}. At its frontier d is {c['frontier_d']:.2f} for `{a}`: with every group there, a step would cost "
        f"{at['cost']:.1f} completions, {at['of_step']:.2f}x `{b}`'s, and at `{a}`'s step count "
        f"({c['steps_ratio']:.2f}x `{b}`'s) it would reach `{b}`'s final score with {at['of_rollouts']:.2f}x `{b}`'s "
        "rollouts."
    )
    if c["goal_d"] is not None:
        text += f" The goal's {ROLLOUT_GOAL}x at that step count needs d at most {c['goal_d']:.2f}"
        low = c["lowest_d"]
        text += (
            f"; the lowest d at any level of an RL-only arm (demonstrations under 1% of its completions) is "
            f"{low['d']:.2f} (`{low['arm']}`, `{low['level']}`)."
            if low
            else "."
        )
    return text + "\n"


def _budget(s: dict[str, Any]) -> str:
    """Every arm against joint at shares of the budget (`curriculum.along_budget`), as a table."""
    read = along_budget(with_joint(s["runs"]))
    lines = [
        "| arm - joint | " + " | ".join(f"at {r} completions" for r in read["rollouts"]) + " |",
        "|---|" + "---|" * len(read["rollouts"]),
    ]
    lines += [
        f"| `{arm} - joint` | " + " | ".join(ci_text(d) for d in diffs) + " |" for arm, diffs in read["arms"].items()
    ]
    text = "\n".join(lines) + f"\n\n(held-out mean read off each run's curve; {read['method']}; uncorrected)\n"
    if not all(run.get("eval_rollouts") for seeds in s["runs"].values() for run in seeds):
        return text
    speed = speed_along_budget(with_joint(s["runs"]))
    lines = [
        "| rollouts to joint's score there, over joint's | "
        + " | ".join(f"at {r} completions" for r in speed["rollouts"])
        + " |",
        "|---|" + "---|" * len(speed["rollouts"]),
    ]
    lines += [
        f"| `{arm}` | " + " | ".join("-" if r is None else f"{r:.3f}x" for r in ratios) + " |"
        for arm, ratios in speed["arms"].items()
    ]
    return (
        text + "\nThe speed endpoint as if the budget had ended there: each run cut at its first evaluation at "
        "or past that point, joint's score there (the mean over its seeds), and the rollouts each arm "
        "needs to reach it, over joint's (restricted means over seeds; the last column is the study's "
        "endpoint; a reading of the curves, not a registered endpoint):\n\n" + "\n".join(lines) + "\n"
    )


def _order(s: dict[str, Any]) -> str:
    """The order query's recommendation and each trained order's prediction beside its realised gain."""
    order = s["order"]
    return (
        f"Recommended order: {' -> '.join(order['order'])}; {order['summary']}.\n\n"
        + calibration_text(s["curriculum"]["order"])
        + "\n"
    )


def _latest(s: dict[str, Any]) -> str:
    """The last ```text block of the Markdown section whose heading starts with the benchmark's name."""
    text, name = s["markdown"], s["section"]
    start = text.index(f"## `{name}`")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```text\n(.*?)```", text[start : None if end < 0 else end], re.S)
    return "```text\n" + blocks[-1] + "```\n"


KINDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "latest": _latest,
    "goal": lambda s: goal_text(s) + "\n",
    "gates": _gates,
    "curriculum": _curriculum,
    "budget": _budget,
    "levels": _levels,
    "cost": _cost,
    "order": _order,
    "primary": _primary,
    "verdicts": _verdicts,
    "excluding": _excluding,
    "setup": _setup,
    "arms": _arms,
    "domains": _domains,
    "claims": _claims,
    "comparisons": _comparisons,
}


def render(summary: dict[str, Any], kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown block kind '{kind}'; expected one of {', '.join(KINDS)}")
    return KINDS[kind](summary)


def refresh(path: Path, root: Path, check: bool = False) -> list[str]:
    """Re-render every block of ``path``; returns the stale ones ('file: summary kind'). Writes
    the file unless ``check``."""
    text = Path(path).read_text()
    stale: list[str] = []
    cache: dict[str, dict[str, Any]] = {}

    def fresh(m: re.Match) -> str:
        source, kind = m.group(2), m.group(3)
        if source not in cache:
            file, _, section = source.partition("#")
            text = (root / file).read_text()
            cache[source] = {"markdown": text, "section": section} if section else json.loads(text)
        body = render(cache[source], kind)
        if body != m.group(4):
            stale.append(f"{path}: {source} {kind}")
        return m.group(1) + body + m.group(5)

    new = BLOCK.sub(fresh, text)
    if not check and new != text:
        Path(path).write_text(new)
    return stale


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [a for a in argv if a != "--check"]
    root = Path.cwd()
    stale = [s for f in files for s in refresh(Path(f), root, check)]
    for s in stale:
        print(("stale: " if check else "rewrote: ") + s)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
