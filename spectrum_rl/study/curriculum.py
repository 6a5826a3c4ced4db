"""The curriculum goal: does the ``adaptive`` curriculum beat ``joint`` training at equal compute,
and is it not below the best published curriculum that ran?

Compute is counted in completions generated (``training.max_rollouts``; dynamic sampling's
replacements included). Two endpoints:

- the held-out mean at the budget: ``adaptive - joint`` is the study's pre-registered primary
  comparison when the config names it (``study.primary``), tested alone by the exact sign-flip test;
- the rollouts each arm needs to reach joint's final score (the mean over joint's seeds): per seed
  the rollouts at the first evaluation at or above it, censored at the budget B when never reached.
  Censoring makes a plain mean meaningless, so the endpoint is the restricted mean
  ``mean_k min(R_k, B)`` (the area under the "not yet reached" curve, as the restricted mean
  survival time of survival analysis); an arm's ratio to joint is the ratio of the two restricted
  means, and the paired per-seed difference of ``min(R, B) / B`` gives its interval and test.

Gate G6 first (study/gates.py): when the oracle arm ran (``study.room_oracle``, default
``oracle_static``), ``oracle - joint`` must reach the
goal's margin, else the comparison is void (the world leaves less to win than the goal asks of
adaptive), and the verdict says so with the numbers.

Also the order query's predicted gain beside the ``order`` arm's realised one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spectrum_rl.analysis.stats import PAIRED_INTERVAL, paired_diff, paired_test
from spectrum_rl.study.arms import BASELINE_ARMS, own_runs

CURRICULUM_GOAL = 0.03  # adaptive must beat joint by this much (held-out mean at equal compute)
ROLLOUT_GOAL = 0.7  # ... and reach joint's final score in at most this share of joint's rollouts
ORACLES = ("oracle_static", "oracle_ladder")


def curriculum_verdict(
    runs: dict[str, list[dict[str, Any]]],
    arms: dict[str, Any],
    family: dict[str, Any],
    order: dict[str, Any] | None,
    room_oracle: str = "oracle_static",
) -> dict[str, Any]:
    """Steps and rollouts each arm needs to reach joint's final mean, the goal, and the order query's
    predicted gain beside the ``order`` arm's realised one."""
    target = arms["joint"]["final_mean"]["mean"]
    reach = {a: [steps_to_reach(s, target) for s in seeds] for a, seeds in runs.items()}
    comps = family["comparisons"]
    out: dict[str, Any] = {"joint_final": target, "steps_to_joint_final": reach}
    if all(s.get("rollouts") for seeds in runs.values() for s in seeds):
        out["rollouts_to_joint_final"] = {
            a: rollouts_to_target(seeds, runs["joint"], target) for a, seeds in runs.items()
        }
        out["informative"] = {a: _informative_per_step(seeds) for a, seeds in runs.items()}
    if "adaptive - joint" in comps:
        vs_joint = comps["adaptive - joint"]["final_mean"]
        ran = [b for b in BASELINE_ARMS if f"adaptive - {b}" in comps and b not in ORACLES]
        best = max(ran, key=lambda b: arms[b]["final_mean"]["mean"]) if ran else None
        vs_best = comps[f"adaptive - {best}"]["final_mean"] if best else None
        speed = out.get("rollouts_to_joint_final", {}).get("adaptive")
        faster = speed is not None and speed["ratio_to_joint"] is not None and speed["ratio_to_joint"] <= ROLLOUT_GOAL
        if faster:  # beyond the noise: the paired interval below 0 (without one, equal differences: the test)
            vs, high = speed["vs_joint"], speed["vs_joint"]["ci_high"]
            faster = high < 0 if high is not None else vs["p"] is not None and vs["p"] < family["alpha"]
        met = (
            vs_joint["excludes_0"]
            and vs_joint["mean"] >= CURRICULUM_GOAL
            and faster
            and (vs_best is None or vs_best["mean"] >= 0)
        )
        room = comps.get(f"{room_oracle} - joint", {}).get("final_mean")
        void = room is not None and room["mean"] < CURRICULUM_GOAL  # gate G6 on the study's own runs
        out["goal"] = {
            "room": room,
            "room_oracle": room_oracle,
            "void": void,
            "adaptive - joint": vs_joint,
            "best_baseline": best,
            "adaptive - best_baseline": vs_best,
            "rollouts_ratio": None if speed is None else speed["ratio_to_joint"],
            "met": bool(met) and not void,
            "rule": f"adaptive - joint >= {CURRICULUM_GOAL} excluding 0 (the primary test, or Holm), adaptive "
            f"reaches joint's final score in <= {ROLLOUT_GOAL}x joint's rollouts (restricted means; the paired "
            "interval of the difference below 0), and adaptive not below the best non-oracle baseline",
        }
    if order is not None:
        checks = {"order": order.get("predicted_gain"), "order_reverse": order.get("reverse")}
        out["order"] = {
            arm: _calibration(predicted, comps[f"{arm} - joint"]["final_mean"])
            for arm, predicted in checks.items()
            if predicted is not None and f"{arm} - joint" in comps and isinstance(predicted, dict)
        }
    return out


def _calibration(predicted: dict[str, Any], realised: dict[str, Any]) -> dict[str, Any]:
    """An order's predicted gain over joint (the order query, in held-out mean units) beside the
    realised ``arm - joint``; calibrated when the realised mean lies inside the predicted interval."""
    low, high = predicted.get("low"), predicted.get("high")
    inside = None if low is None else bool(low <= realised["mean"] <= high)
    return {"predicted": predicted, "realised": realised, "calibrated": inside}


def steps_to_reach(run: dict[str, Any], target: float) -> int | None:
    """The first eval step whose held-out mean is at least ``target`` (None: never)."""
    return next((step for step, v in zip(*run["eval_mean"]) if v >= target), None)


def _reached_at(run: dict[str, Any], target: float) -> int | None:
    """Completions generated by the first evaluation at or above ``target`` (None: never)."""
    return next((r for r, v in zip(run["eval_rollouts"], run["eval_mean"][1]) if v >= target), None)


def rollouts_to_target(seeds: list[dict[str, Any]], joint: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Per seed the rollouts to reach ``target`` (None: censored at the budget), the restricted mean
    over seeds (censored values count as the budget), its ratio to joint's, and the paired
    difference of min(R, B) / B against joint's seeds (t interval, sign-flip p). No ratio where
    joint's mean start score is already at ``target``: there is no gain to reach, and an arm that
    starts there would read as infinitely fast."""
    budget = max(s["rollouts"] for s in seeds + joint)
    gain = target > float(np.mean([s["eval_mean"][1][0] for s in joint]))
    at = [_reached_at(s, target) for s in seeds]
    capped = [min(r, budget) if r is not None else budget for r in at]
    joint_capped = [min(r, budget) if (r := _reached_at(s, target)) is not None else budget for s in joint]
    mean, joint_mean = float(np.mean(capped)), float(np.mean(joint_capped))
    steps, joint_steps = _steps_restricted(seeds, target), _steps_restricted(joint, target)
    n = min(len(capped), len(joint_capped))
    x, y = [c / budget for c in capped[:n]], [c / budget for c in joint_capped[:n]]
    vs = None
    if n:
        p, test = paired_test(x, y)
        vs = {
            **paired_diff(x, y).to_dict(),
            "method": f"{PAIRED_INTERVAL}; {test}",
            "p": None if np.isnan(p) else round(p, 6),
        }
    return {
        "per_seed": at,
        "budget": budget,
        "reached": f"{sum(r is not None for r in at)}/{len(at)}",
        "restricted_mean": round(mean, 1),
        "ratio_to_joint": round(mean / joint_mean, 4) if joint_mean and gain else None,
        "vs_joint": vs,
        "method": "restricted mean of min(rollouts to target, budget); paired difference of its share of the "
        "budget against joint's seeds",
        # the ratio's two factors: what a step costs, and how many steps it takes
        "rollouts_per_step": round(_per_step(seeds), 1),
        "steps_ratio_to_joint": round(steps / joint_steps, 4) if joint_steps else None,
    }


def _per_step(seeds: list[dict[str, Any]]) -> float:
    """Mean completions generated per optimizer step (dynamic sampling's replacements included)."""
    return float(np.mean([s["rollouts"] / max(1, s["eval_mean"][0][-1]) for s in seeds]))


def _steps_restricted(seeds: list[dict[str, Any]], target: float) -> float:
    """Restricted mean of the optimizer steps to ``target``, censored at each run's last step."""
    last = [s["eval_mean"][0][-1] for s in seeds]
    return float(np.mean([r if (r := steps_to_reach(s, target)) is not None else n for s, n in zip(seeds, last)]))


def _informative_per_step(seeds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean share of a step's groups with signal, prompts drawn again by dynamic sampling per run,
    the share of groups still without signal after it, and demonstrations trained on per run."""
    informative = [s["informative"] for s in seeds if s.get("informative") is not None]
    left = [s["zero_std_left"] for s in seeds if s.get("zero_std_left") is not None]
    return {
        "informative": round(float(np.mean(informative)), 4) if informative else None,
        "resampled_per_run": round(float(np.mean([s.get("resampled", 0.0) for s in seeds])), 1),
        "zero_std_left": round(float(np.mean(left)), 4) if left else None,
        "demonstrations_per_run": round(float(np.mean([s.get("sft_samples", 0.0) for s in seeds])), 1),
    }


def _budget_points(runs: dict[str, list[dict[str, Any]]], shares: tuple[float, ...]) -> list[int]:
    """Completions at ``shares`` of the budget, the budget being the least any run reached at its last
    evaluation (so reading a curve there extrapolates nothing)."""
    budget = min(s["eval_rollouts"][-1] for seeds in runs.values() for s in seeds)
    return [round(share * budget) for share in shares]


def along_budget(
    runs: dict[str, list[dict[str, Any]]], shares: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
) -> dict[str, Any]:
    """``arm - joint`` of the held-out mean at equal compute before the budget too: each run's eval
    curve read at ``shares`` of the budget (linear between its evaluations; the budget is the least
    any run reached at its last evaluation, so nothing is extrapolated), paired by seed (t interval
    over per-seed differences). A reading of the curves, not a registered endpoint: it tells whether
    another budget would have changed an answer (an oracle's room, G6, included)."""
    joint = runs["joint"]
    points = _budget_points(runs, shares)

    def read(run: dict[str, Any]) -> np.ndarray:
        return np.interp(points, run["eval_rollouts"], run["eval_mean"][1])

    out: dict[str, Any] = {"rollouts": points, "method": PAIRED_INTERVAL, "arms": {}}
    for arm, seeds in runs.items():
        if arm in ("joint", "rl_only"):
            continue
        n = min(len(seeds), len(joint))  # seed k is run k of every arm
        mine, theirs = [read(a) for a in seeds[:n]], [read(j) for j in joint[:n]]
        out["arms"][arm] = [
            paired_diff([a[i] for a in mine], [j[i] for j in theirs]).to_dict() for i in range(len(points))
        ]
    return out


def speed_along_budget(
    runs: dict[str, list[dict[str, Any]]], shares: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
) -> dict[str, Any]:
    """The rollouts endpoint as if the budget had ended earlier: at each share of it (the points of
    ``along_budget``), every run ends at its first evaluation at or past the point (at the last
    point, each run's own last evaluation, as the endpoint has it), joint's final score there is the
    mean of joint's seeds at their ends, and each arm's ratio to joint is that of the rollouts to
    reach it (``rollouts_to_target``: restricted means, censored at each run's end). A reading of
    the curves, not a registered endpoint: it tells whether the speed criterion turns on where the
    budget ends."""
    points = _budget_points(runs, shares)

    def cut(run: dict[str, Any], point: int) -> dict[str, Any]:
        rollouts, (steps, means) = run["eval_rollouts"], run["eval_mean"]
        end = next(i for i, r in enumerate(rollouts) if r >= point) + 1
        return {
            **run,
            "eval_rollouts": rollouts[:end],
            "eval_mean": [steps[:end], means[:end]],
            "rollouts": rollouts[end - 1],
        }

    out: dict[str, Any] = {"rollouts": points, "arms": {}}
    for point in points:
        joint = [cut(s, point) for s in runs["joint"]]
        target = float(np.mean([s["eval_mean"][1][-1] for s in joint]))
        for arm, seeds in runs.items():
            if arm not in ("joint", "rl_only"):
                spent = rollouts_to_target([cut(s, point) for s in seeds], joint, target)
                out["arms"].setdefault(arm, []).append(spent["ratio_to_joint"])
    return out


def short_of_budget(runs: dict[str, list[dict[str, Any]]], spec: dict[str, Any]) -> list[str]:
    """The runs (``arm seed k``) that stopped at the step cap before the study's budget of completions:
    where there are any, those arms are not compared at equal compute (raise ``study.steps``)."""
    budget = spec.get("max_rollouts")
    if not budget:
        return []
    first = spec.get("first_seed") or 0
    return [
        f"{arm} seed {first + k}"
        for arm, seeds in own_runs(runs).items()
        for k, s in enumerate(seeds)
        if (s.get("rollouts") or 0) < budget
    ]


def step_cost(summary: dict[str, Any], rounds: int) -> dict[str, Any] | None:
    """Why a step of each arm costs what it does, for a study whose trained domain is one ladder
    whose groups its runs counted per level (None otherwise). With P prompts of G completions and
    ``rounds`` rounds of dynamic sampling, a step whose groups are each without signal with chance
    d generates about P G (1 + d + ... + d^rounds) completions: a dropped group is drawn again, and
    is without signal with the same chance. Per arm: d (its groups pooled over seeds and levels),
    that estimate and the measured cost. For the primary comparison ``a - b``: ``a``'s d at its
    frontier and what a step would cost with every group there, as a share of ``b``'s step and,
    at ``a``'s steps ratio, of ``b``'s rollouts to target; the largest d that meets ROLLOUT_GOAL at
    that steps ratio; and the smallest d at any level in an arm that trained on demonstrations for
    less than 1% of the completions it generated (the RL-only arms)."""
    spent, primary = summary.get("curriculum", {}).get("rollouts_to_joint_final"), summary["spec"].get("primary")
    if not spent or not primary or len(summary["domains"]) != 1:
        return None
    domain, (a, b), spec = summary["domains"][0], primary.split(" - "), summary["spec"]

    def cost(d: float, arm: str = a) -> float:
        own = spec["custom_arms"].get(arm, {}).get("training", {})  # an arm may set its own batch
        size = own.get("prompts_per_step", spec["prompts_per_step"]) * own.get("group_size", spec["group_size"])
        return size * sum(d**r for r in range(rounds + 1))

    def levels(arm: str) -> dict[str, dict[str, float]]:
        own = summary["arms"][arm].get("levels") or {}
        return {k: v for k, v in own.items() if "groups_share" in v and k.rsplit("@", 1)[1].isdigit()}

    arms = {}
    for arm in summary["arms"]:
        if not levels(arm) or arm not in spent:
            continue
        d = sum(v["groups_share"] * v["zero_std_share"] for v in levels(arm).values())
        arms[arm] = {"d": round(d, 4), "estimate": round(cost(d, arm), 1), "measured": spent[arm]["rollouts_per_step"]}
    frontier = (summary["arms"][a].get("levels") or {}).get(f"{domain}@frontier")
    if a not in arms or b not in arms or not frontier or not spent[a]["steps_ratio_to_joint"]:
        return None
    steps = spent[a]["steps_ratio_to_joint"]
    at = cost(frontier["zero_std_share"]) / spent[b]["rollouts_per_step"]
    # the largest d with cost(d) / b's cost * steps <= ROLLOUT_GOAL (cost rises with d)
    goal = ROLLOUT_GOAL * spent[b]["rollouts_per_step"] / steps
    lo, hi = 0.0, 1.0
    for _ in range(50):
        lo, hi = ((lo + hi) / 2, hi) if cost((lo + hi) / 2) <= goal else (lo, (lo + hi) / 2)
    informative = summary["curriculum"]["informative"]
    rl_only = [arm for arm in arms if informative[arm].get("demonstrations_per_run", 0.0) < 0.01 * spent[arm]["budget"]]
    lowest = min(((v["zero_std_share"], arm, k) for arm in rl_only for k, v in levels(arm).items()), default=None)
    return {
        "rounds": rounds,
        "arms": arms,
        "primary": [a, b],
        "frontier_d": frontier["zero_std_share"],
        "all_at_frontier": {
            "cost": round(cost(frontier["zero_std_share"]), 1),
            "of_step": round(at, 4),
            "of_rollouts": round(at * steps, 4),
        },
        "steps_ratio": steps,
        "goal_d": round(lo, 4) if cost(0.0) <= goal else None,
        "lowest_d": None if lowest is None else {"d": lowest[0], "arm": lowest[1], "level": lowest[2]},
    }
