"""The curriculum goal: does the ``adaptive`` curriculum beat ``joint`` training, and the best
published or oracle curriculum that ran, by paired comparisons over seeds (Holm-corrected within
the study's family)? Also how many steps each arm needs to reach joint's final score, and the
order query's predicted gain beside the ``order`` arm's realised one.
"""

from __future__ import annotations

from typing import Any

from spectrum_rl.study.arms import BASELINE_ARMS

CURRICULUM_GOAL = 0.05  # adaptive must beat joint by this much (held-out mean), and the best baseline


def curriculum_verdict(
    runs: dict[str, list[dict[str, Any]]],
    arms: dict[str, Any],
    family: dict[str, Any],
    order: dict[str, Any] | None,
) -> dict[str, Any]:
    """Steps each arm needs to reach joint's final mean, the goal (``adaptive`` beats ``joint`` by
    at least CURRICULUM_GOAL and the best baseline, both excluding 0 after Holm), and the order
    query's predicted gain beside the ``order`` arm's realised one."""
    target = arms["joint"]["final_mean"]["mean"]
    reach = {a: [steps_to_reach(s, target) for s in seeds] for a, seeds in runs.items()}
    comps = family["comparisons"]
    out: dict[str, Any] = {"joint_final": target, "steps_to_joint_final": reach}
    if "adaptive - joint" in comps:
        vs_joint = comps["adaptive - joint"]["final_mean"]
        ran = [b for b in BASELINE_ARMS if f"adaptive - {b}" in comps]
        best = max(ran, key=lambda b: arms[b]["final_mean"]["mean"]) if ran else None
        vs_best = comps[f"adaptive - {best}"]["final_mean"] if best else None
        met = (
            vs_joint["excludes_0"]
            and vs_joint["mean"] >= CURRICULUM_GOAL
            and (vs_best is None or (vs_best["excludes_0"] and vs_best["mean"] > 0))
        )
        out["goal"] = {
            "adaptive - joint": vs_joint,
            "best_baseline": best,
            "adaptive - best_baseline": vs_best,
            "met": bool(met),
            "rule": f"adaptive - joint >= {CURRICULUM_GOAL} and adaptive - best baseline > 0, both excluding 0 (Holm)",
        }
    if order is not None and "order - joint" in comps:
        out["order"] = {
            "predicted_gain": order.get("predicted_gain"),
            "predicted_interval": order.get("predicted_gain_interval"),
            "predicted_units": "summed normalised transfer (the order query's objective), not held-out score",
            "realised": comps["order - joint"]["final_mean"],
        }
    return out


def steps_to_reach(run: dict[str, Any], target: float) -> int | None:
    """The first eval step whose held-out mean is at least ``target`` (None: never)."""
    return next((step for step, v in zip(*run["eval_mean"]) if v >= target), None)
