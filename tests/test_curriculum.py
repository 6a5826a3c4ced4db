"""The curriculum world and its study: the ladder corpus, the study section, the gates, the verdict."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from spectrum_rl.bootstrap import RECIPES, BootstrapConfig, _corpus_row, shortcut_answer
from spectrum_rl.config import Config, load_config
from spectrum_rl.errors import ConfigError
from spectrum_rl.study.arms import StudySpec, arm_overlay, study_base
from spectrum_rl.study.comparisons import compare_family, eval_auc, family_pairs
from spectrum_rl.study.curriculum import curriculum_verdict, steps_to_reach
from spectrum_rl.study.gates import dead_weight, gate_lines, measure_gates, transfer_passes
from spectrum_rl.trainer.run import scheduler_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", ["ladder", "ladder_v3", "ladder_v4"])
def test_ladder_corpus_gives_each_level_its_share_of_shortcuts(recipe):
    cfg = RECIPES[recipe]
    rng = random.Random(0)
    by_level: dict[tuple[str, int], list[bool]] = {}
    for _ in range(6000):
        question, answer = _corpus_row(rng, cfg)
        name = {"sort": "sorting", "reverse": "reversal", "first letter": "first_letter"}.get(
            question.split(":")[0], "last_letter"
        )
        payload = question.split(": ", 1)[1]
        if cfg.knobs.get(name, {}).get("distinct"):  # no letter repeats: the shortcut is never right
            assert len(set(payload)) == len(payload)
        shortcut = shortcut_answer(name, question, alphabet=name in cfg.alphabet)
        by_level.setdefault((name, len(payload)), []).append(answer == shortcut)
    share = {k: sum(v) / len(v) for k, v in by_level.items()}
    for name, (_, lo, hi) in cfg.ladders.items():
        for level in range(lo + 1, hi + 1):  # within 4 binomial SE of the recipe's probability
            p, n = cfg.shortcut[name][level - lo], len(by_level[(name, level)])
            assert abs(share[(name, level)] - p) <= 4 * (p * (1 - p) / n) ** 0.5 + 0.01, (name, level)
    assert share[("first_letter", 1)] <= 0.05 and share[("last_letter", 1)] <= 0.05  # no shortcut at the bottom
    assert share[("first_letter", 6)] == 1.0 and share[("last_letter", 6)] == 1.0  # never the answer at the top
    assert share[("reversal", 2)] < 0.08  # only where the right answer is the copy (a palindrome)
    assert shortcut_answer("first_letter", "first letter: qzfb") == "z"
    assert shortcut_answer("last_letter", "last letter: qzfb") == "f"
    assert shortcut_answer("counting", "count a: abba") is None
    # the letter after the answer: never the other letter ladder's answer, unlike the neighbour at length 2
    assert shortcut_answer("first_letter", "first letter: qz", alphabet=True) == "r"
    assert shortcut_answer("last_letter", "last letter: qz", alphabet=True) == "a"
    assert shortcut_answer("last_letter", "last letter: qz") == "q"  # the neighbour: first_letter's answer


def test_a_per_letter_shortcut_takes_each_letter_on_its_own_odds():
    odds = (0.0, 0.5, 0.9)
    cfg = BootstrapConfig(ladders={"shift": ("length", 1, 3)}, per_letter={"shift": odds})
    rng, taken, both_wrong = random.Random(0), {2: [], 3: []}, []
    for _ in range(3000):
        question, answer = _corpus_row(rng, cfg)
        payload = question.split(": ")[1]
        short = shortcut_answer("shift", question)
        assert short == "".join(chr((ord(c) - 96) % 26 + 97) for c in payload)  # every letter moved by one
        right = "".join(chr((ord(c) - 97 + j) % 26 + 97) for j, c in enumerate(payload, 1))
        assert answer[0] == right[0] and all(a in (r, s) for a, r, s in zip(answer, right, short))
        for j in range(2, len(answer) + 1):
            taken[j].append(answer[j - 1] == short[j - 1])
        if len(answer) == 3:
            both_wrong.append(answer[1:] == short[1:])
    for j in (2, 3):  # within 4 binomial SE of the recipe's odds
        p, n = odds[j - 1], len(taken[j])
        assert abs(sum(taken[j]) / n - p) <= 4 * (p * (1 - p) / n) ** 0.5, j
    # drawn letter by letter, independently: at length 3 both take the shortcut as often as the product
    n = len(both_wrong)
    assert abs(sum(both_wrong) / n - 0.45) <= 4 * (0.45 * 0.55 / n) ** 0.5


def test_a_decoy_shortcut_is_fixed_per_question_and_never_a_letter_of_the_input():
    for question, generator in [("first letter: qzfb", "first_letter"), ("last 2 letters: qzfbx", "suffix")]:
        decoy = shortcut_answer(generator, question, decoy=True)
        assert decoy == shortcut_answer(generator, question, decoy=True)  # the same wrong answer each time
        assert len(decoy) == len(shortcut_answer(generator, question))
        assert not set(decoy) & set(question.split(": ")[1])
    decoys = {shortcut_answer("first_letter", f"first letter: ab{c}", decoy=True) for c in "cdefghij"}
    assert len(decoys) > 1  # one per question, not one for all
    assert shortcut_answer("counting", "count a: abba", decoy=True) is None


def test_curriculum_config_sets_the_study_and_its_custom_arms():
    config = load_config(ROOT / "configs" / "curriculum.yaml")
    spec = StudySpec().with_config(config.study)
    assert spec.steps == 300 and spec.claim_seeds == 8 and spec.seeds_of("adaptive") == 8 and spec.seeds_of("sec") == 5
    assert spec.max_rollouts == 7200 and spec.primary == "adaptive - joint"
    names = config.domain_names
    static = arm_overlay("oracle_static", spec, config, names, None)
    assert static["scheduler"]["policy"]["level_weights"]["first_letter"] == {2: 2, 3: 1, 4: 1, 5: 1, 6: 1}
    assert static["training"]["sft"]["mu"]["type"] == "rl_only"  # custom arms are RL unless they say
    assert arm_overlay("order", spec, config, names, None, ["b", "a"])["scheduler"]["policy"]["order"] == ["b", "a"]
    base = study_base(config, spec, "counting")
    assert base["scheduler"]["policy"] == "joint" and base["scheduler"]["difficulty"]["mode"] == "uniform"
    assert [t["name"] for t in base["domains"]] == names[:-1]
    for arm in spec.arms:  # every arm's config validates
        Config.model_validate({**base, **arm_overlay(arm, spec, config, names[:-1], None, names[:-1])})


def test_along_budget_reads_every_curve_at_equal_compute_paired_by_seed():
    from spectrum_rl.study.curriculum import along_budget

    def run(rollouts: list[int], curve: list[float]) -> dict:
        return {"eval_rollouts": rollouts, "eval_mean": [list(range(len(curve))), curve]}

    joint = [run([0, 400, 800], [0.1, 0.3, 0.5]), run([0, 400, 800], [0.2, 0.4, 0.6])]
    # faster per completion but evaluated at other rollouts; one seed more than joint (left unpaired)
    fast = [run([0, 500, 1000], [0.1, 0.6, 0.6]), run([0, 500, 1000], [0.2, 0.7, 0.7]), run([0, 9], [0.0, 0.0])]
    read = along_budget({"rl_only": joint, "joint": joint, "fast": fast}, shares=(0.5, 1.0))
    assert read["rollouts"] == [4, 9]  # the least any run reached at its last evaluation: nothing extrapolated
    read = along_budget({"joint": joint, "fast": fast[:2]}, shares=(0.5, 1.0))
    assert read["rollouts"] == [400, 800] and list(read["arms"]) == ["fast"]
    half, full = read["arms"]["fast"]
    assert half["n"] == 2 and half["mean"] == pytest.approx(0.2)  # 0.1 + 0.5 * 0.8 = 0.5 against 0.3
    assert full["mean"] == pytest.approx(0.1) and full["ci_low"] is None  # equal differences: no interval


def test_the_speed_endpoint_is_read_as_if_the_budget_had_ended_earlier():
    from spectrum_rl.study.curriculum import rollouts_to_target, speed_along_budget

    def run(curve: list[float]) -> dict:
        return {"eval_rollouts": [0, 200, 400, 600, 800], "eval_mean": [[0, 1, 2, 3, 4], curve], "rollouts": 800}

    joint = [run([0.1, 0.2, 0.3, 0.4, 0.5]), run([0.2, 0.3, 0.4, 0.5, 0.6])]
    fast = [run([0.1, 0.4, 0.5, 0.6, 0.6]), run([0.2, 0.5, 0.6, 0.7, 0.7])]
    read = speed_along_budget({"rl_only": joint, "joint": joint, "fast": fast}, shares=(0.5, 1.0))
    assert read["rollouts"] == [400, 800] and list(read["arms"]) == ["fast"]
    # at 400: joint ends at 0.3 and 0.4 (target 0.35), reaches it at 400 and never (censored: 400);
    # fast at 200 in both seeds. At 800: target 0.55, joint 800 and never; fast 600 and 400
    assert read["arms"]["fast"] == [pytest.approx(0.5), pytest.approx(0.625)]
    # the last point is the study's own endpoint, each run's last evaluation included
    assert read["arms"]["fast"][-1] == rollouts_to_target(fast, joint, 0.55)["ratio_to_joint"]
    # joint's final no higher than its start (0.15): every arm "reaches" it before training, no ratio
    assert rollouts_to_target(fast, joint, 0.15)["ratio_to_joint"] is None
    assert rollouts_to_target(fast, joint, 0.1501)["ratio_to_joint"] == 1.0  # 200 and 0 in both arms
    # a run evaluated last just past the budget keeps that evaluation: it reaches 0.55 there, at 830
    late = [{**r, "eval_rollouts": [0, 200, 400, 600, 830], "rollouts": 830} for r in joint]
    late = [{**r, "eval_mean": [r["eval_mean"][0], [0.1, 0.2, 0.3, 0.4, 0.6]]} for r in late]
    assert speed_along_budget({"joint": joint, "late": late}, shares=(1.0,))["arms"]["late"] == [
        pytest.approx(830 / 815, abs=1e-4)  # joint: 800 and censored at the budget, 830
    ]


def test_runs_stopped_by_the_step_cap_before_the_budget_are_named():
    from spectrum_rl.study.curriculum import short_of_budget

    runs = {"joint": [{"rollouts": 7200}, {"rollouts": 6100}], "adaptive": [{"rollouts": 7250}, {"rollouts": 7210}]}
    spec = {"max_rollouts": 7200, "first_seed": 100}
    assert short_of_budget(runs, spec) == ["joint seed 101"]  # joint ran on its own: its runs count
    assert short_of_budget({**runs, "rl_only": runs["joint"]}, spec) == ["rl_only seed 101"]  # named once
    assert short_of_budget(runs, {"max_rollouts": None}) == []  # a budget in steps: nothing to fall short of


def test_a_study_checks_its_arms_before_anything_runs(tmp_path, capsys):
    from spectrum_rl.cli import main
    from spectrum_rl.study.arms import BUILTIN_ARMS

    config = load_config(ROOT / "configs" / "curriculum.yaml")
    spec = StudySpec().with_config(config.study)
    names = config.domain_names[:-1]
    base = study_base(config, spec, "counting")
    for arm in BUILTIN_ARMS:  # the list the check trusts is the list arm_overlay builds
        Config.model_validate({**base, **arm_overlay(arm, spec, config, names, None, names)})
    with pytest.raises(ConfigError, match="unknown arm 'sft_then_rl'"):
        arm_overlay("sft_then_rl", spec, config, names, None)

    data = yaml.safe_load((ROOT / "configs" / "curriculum.yaml").read_text())
    data["study"]["arms"] = ["joint", "sft_then_rl"]
    data["study"].pop("primary")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    for argv in (["validate", str(path)], ["study", str(path), "--output-dir", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}:") and "study.arms[1]: unknown arm 'sft_then_rl'" in err, err
        assert "'staged'" in err and "\n" not in err and "Traceback" not in err
    assert main(["study", str(path), "--output-dir", str(out), "--arms", "joint,spectrm"]) == 2
    assert "--arms: unknown arm 'spectrm'; did you mean 'spectrum'?" in capsys.readouterr().err
    data["study"]["arms"] = ["joint", "staged"]  # staged trains on demonstrations; sorting has none
    data["domains"][0]["expert_field"] = None
    data["training"]["sft"]["mu"] = {"type": "rl_only"}  # the base config is RL only: only the arm needs them
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["study", str(path), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}:" in err and "domains[0].expert_field: arm 'staged': domain 'sorting' has no expert" in err, err
    # the way out that keeps the data as it is: the study without the arms that need demonstrations
    assert err.endswith("; or run the arms without them: --arms joint (the arms that train on demonstrations: staged)")
    assert not out.exists()  # nothing written, no run started


def _run(curve: list[float], steps: list[int] | None = None) -> dict:
    steps = steps or [0, 10, 20, 30]
    rollouts = [48 * s for s in steps]  # 8 prompts x 6 completions a step
    return {
        "eval_mean": [steps, curve],
        "eval_rollouts": rollouts,
        "rollouts": rollouts[-1],
        "final_mean": curve[-1],
        "final": {"a": curve[-1]},
    }


def test_auc_and_steps_to_reach():
    fast, slow = _run([0.2, 0.6, 0.6, 0.6]), _run([0.2, 0.2, 0.2, 0.6])
    assert eval_auc(fast) == pytest.approx((0.4 + 0.6 + 0.6) / 3)
    assert eval_auc(fast) > eval_auc(slow)
    assert steps_to_reach(fast, 0.6) == 10 and steps_to_reach(slow, 0.6) == 30 and steps_to_reach(slow, 0.7) is None


def test_curriculum_verdict_needs_the_margin_over_joint_and_a_win_over_the_best_baseline():
    joint = [_run([0.2, 0.3, 0.4, 0.4 + 0.01 * k]) for k in range(6)]
    adaptive = [_run([0.2, 0.5, 0.5, 0.5 + 0.01 * k + 0.002 * (k % 3)]) for k in range(6)]
    sec = [_run([0.2, 0.4, 0.45, 0.45 + 0.01 * k]) for k in range(6)]
    runs = {"joint": joint, "adaptive": adaptive, "sec": sec}
    arms = {a: {"final_mean": {"mean": sum(s["final_mean"] for s in r) / len(r)}} for a, r in runs.items()}
    family = compare_family(runs, family_pairs(list(runs)))
    verdict = curriculum_verdict(runs, arms, family, None)
    goal = verdict["goal"]
    assert goal["best_baseline"] == "sec" and goal["met"] and not goal["void"]
    assert goal["adaptive - joint"]["mean"] == pytest.approx(0.1, abs=0.002)
    assert verdict["steps_to_joint_final"]["adaptive"][0] == 10
    # joint's final mean (0.425) is reached by adaptive at its first eval (480 completions) in every
    # seed, by joint itself only at its last (1440) in 3 of 6 seeds: the others are censored there
    spent = verdict["rollouts_to_joint_final"]
    assert spent["adaptive"]["per_seed"] == [480] * 6 and spent["joint"]["reached"] == "3/6"
    assert spent["adaptive"]["ratio_to_joint"] == pytest.approx(480 / 1440, abs=1e-4) and goal["rollouts_ratio"] < 0.7
    # its two factors: a step costs the same 48 completions, and adaptive takes 10 steps to joint's 30
    assert spent["adaptive"]["rollouts_per_step"] == spent["joint"]["rollouts_per_step"] == 48
    assert spent["adaptive"]["steps_ratio_to_joint"] == pytest.approx(10 / 30, abs=1e-4)
    runs["sec"] = [_run([0.2, 0.5, 0.5, 0.52 + 0.01 * k]) for k in range(6)]  # sec now beats adaptive
    arms["sec"]["final_mean"]["mean"] = 0.545
    family = compare_family(runs, family_pairs(list(runs)))
    assert not curriculum_verdict(runs, arms, family, None)["goal"]["met"]


def test_the_room_is_measured_by_the_oracle_the_config_names():
    joint = [_run([0.2, 0.3, 0.4, 0.4 + 0.01 * k]) for k in range(4)]
    climbs = [_run([0.2, 0.3, 0.5, 0.5 + 0.01 * k]) for k in range(4)]  # +0.1 over joint
    flat = [_run([0.2, 0.3, 0.4, 0.39 + 0.01 * k]) for k in range(4)]  # -0.01: no room
    runs = {"joint": joint, "adaptive": climbs, "oracle_static": flat, "oracle_ladder": climbs}
    arms = {a: {"final_mean": {"mean": sum(s["final_mean"] for s in r) / len(r)}} for a, r in runs.items()}
    family = compare_family(runs, family_pairs(list(runs)))
    assert curriculum_verdict(runs, arms, family, None)["goal"]["void"]  # the default: oracle_static
    goal = curriculum_verdict(runs, arms, family, None, room_oracle="oracle_ladder")["goal"]
    assert not goal["void"] and goal["room_oracle"] == "oracle_ladder"
    assert goal["room"]["mean"] == pytest.approx(0.1)
    world = yaml.safe_load((ROOT / "configs" / "curriculum_v5.yaml").read_text())
    world["study"]["room_oracle"] = "oracle_ladr"
    with pytest.raises(ValueError, match="'oracle_ladr' is not an arm of study.custom_arms"):
        Config.model_validate(world)
    gates = json.loads((ROOT / "docs" / "world_trials" / "gates-v4.json").read_text())
    room = {"mean": 0.1, "ci_low": 0.05, "ci_high": 0.15, "n": 3}
    g6 = {"oracle": "oracle_ladder", "passes": True, "margin": 0.03, "oracle_minus_joint": room}
    lines = gate_lines({**gates, "G6": g6})
    assert lines[-1].startswith("G6 room         PASS  oracle_ladder - joint +0.100 [+0.050, +0.150]")


def test_scheduler_table_summarises_mixture_levels_and_mu():
    decisions = [
        {"step": s, "mu": 0.0, "mixture": {"a": 1.0 if s <= 2 else 0.5, "b": 0.0 if s <= 2 else 0.5}, "difficulty/a": s}
        for s in range(1, 5)
    ]
    table = scheduler_table(decisions, ["a", "b"], parts=2)
    rows = [[c._cells[i] for c in table.columns] for i in range(table.row_count)]
    assert rows == [["1-2", "0.00", "1.00 @1.5", "0.00"], ["3-4", "0.00", "0.50 @3.5", "0.50"]]


def test_gates_run_end_to_end_on_a_small_world(builtin_tiny, tmp_path):
    """Every gate is measured and printed (a 2-step budget: the numbers are not evidence)."""

    def ladder(n: str) -> dict:
        source = {"type": "builtin", "generator": n, "difficulty": {"length": [3, 4]}}
        return {
            "name": n,
            "kind": "structured",
            "eval": {"size": 8},
            "reward": [{"type": "exact_match"}],
            "source": source,
        }

    domains = [
        ladder("sorting"),
        # a domain without levels, out of the model's reach: a slice of G4's of its own
        {"name": "counting", "kind": "structured", "eval": {"size": 4}, "reward": [{"type": "numeric"}],
         "source": {"type": "builtin", "generator": "counting", "difficulty": {"length": 30, "letters": 2}}},
        # a creative domain: no slice (its graded reward carries signal at any pass rate)
        {"name": "acrostic", "kind": "creative", "eval": {"size": 4}, "reward": [{"type": "constraint"}],
         "source": {"type": "builtin", "generator": "acrostic"}},
        ladder("reversal"),
    ]  # fmt: skip
    config = Config.model_validate(
        {
            "model": {"name_or_path": "builtin:tiny"},
            "domains": domains,
            "training": {"max_new_tokens": 8},
            "study": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "eval_every": 2, "probe_steps": 1},
        }
    )
    result = measure_gates(config, tmp_path, tmp_path / "gates", seeds=2, prompts=4, samples=2, log=lambda _: None)
    assert set(result) >= {"G1", "G2", "G3", "G4", "G5", "G6"} and (tmp_path / "gates" / "gates.json").exists()
    assert result["G1"]["gain"]["n"] == 2 and set(result["G2"]) == {"sorting"}
    assert set(result["G2"]["sorting"]["levels"]) == {3, 4}
    run = result["runs"]["joint-s1"]  # each run's per-domain record: where uniform's generation goes
    assert set(run["start"]) == set(run["blind"]) == {"sorting", "counting", "acrostic"} and run["steps"] == 2
    assert all(0 <= b <= 1 for b in run["blind"].values())  # reversal is out: the plasticity probe
    lines = gate_lines(result)
    assert [line.split()[0] for line in lines][:2] == ["G1", "G2"] and lines[-2].startswith("G5")
    assert "counting (unsolvable, 0.00->0.00)" in next(line for line in lines if line.startswith("G4"))
    assert {s["slice"].split("@")[0] for s in result["G4"]["slices"]} <= {"sorting", "counting"}
    measured = {n: g for n, g in result["G3"].items() if "gain" in g}
    assert measured  # the sampled reading beside the greedy rule, on G2's prompts
    for n, g in measured.items():
        assert g["sampled"]["before"] == result["G2"][n]["levels"][g["next_level"]]["pass_rate"]
        assert 0 <= g["sampled"]["after"] <= 1 and any("; sampled " in x for x in lines if n in x)
    assert lines[-1].startswith("G6 room         FAIL") and "oracle_static" in lines[-1]  # the config has no oracle
    flat = {**result, "G2": {}, "G3": {}, "G4": {"slices": [], "wasted_share": 0, "passes": False}}
    assert gate_lines(flat)[1:4] == [  # a world without ladders says so, gate by gate
        "G2 ladder       NONE  no domain has difficulty levels (a range knob of a built-in generator, "
        "or a difficulty_field)",
        "G3 transfer up  NONE  no ladder to climb",
        "G4 dead weight  FAIL  no slice is dead at the start",
    ]


def test_transfer_up_the_ladder_needs_a_rung_near_0_lifted_clearly():
    assert transfer_passes(0.02, 0.40, 0.15)
    assert not transfer_passes(0.10, 1.00, 0.09)  # lifted, but it was not a rung still to climb
    assert not transfer_passes(0.00, 0.15, 0.10)  # beyond the noise, but not lifted far enough
    assert not transfer_passes(0.04, 0.25, 0.25)  # within the noise


def test_dead_weight_tells_the_rungs_joint_climbs_from_the_slices_nothing_moves():
    def rates(*values):
        return {level: {"pass_rate": v} for level, v in enumerate(values, start=1)}

    start = {"a": rates(1.0, 0.5, 0.02, 0.0)}
    climbed = dead_weight(start, {"a": rates(1.0, 0.9, 0.6, 0.3)}, n_domains=2)
    assert [(s["slice"], s["kind"]) for s in climbed["slices"]] == [
        ("a@1", "saturated"),
        ("a@3", "locked"),
        ("a@4", "locked"),
    ]
    assert climbed["passes"] and climbed["wasted_share"] == pytest.approx(3 / 8)
    stuck = dead_weight(start, {"a": rates(1.0, 0.9, 0.6, 0.0)}, n_domains=2)
    assert stuck["slices"][-1]["kind"] == "unsolvable" and not stuck["passes"]  # out of the primary eval
    assert not dead_weight({"a": rates(0.5, 0.4)}, {"a": rates(0.9, 0.8)}, n_domains=1)["passes"]  # nothing to save
    # a domain without levels is one slice of its own (level None), a ladder's level a share of its domain
    flat = dead_weight(
        start | {"b": {None: {"pass_rate": 0.0}}},
        {"a": rates(1.0, 0.9, 0.6, 0.3)} | {"b": {None: {"pass_rate": 0.0}}},
        2,
    )
    assert flat["slices"][-1] == {
        "slice": "b",
        "kind": "unsolvable",
        "start": 0.0,
        "after_joint": 0.0,
        "uniform_share": 0.5,
    }


def test_the_report_shows_rollouts_to_joints_final_and_the_goal_with_its_speed(capsys):
    """The HTML report's curriculum section carries the compute endpoint (reached, restricted mean,
    ratio per arm) and the goal's whole sentence, the same one the docs render."""
    from spectrum_rl.study.report import _curriculum_section, goal_text, reached_text

    summary = json.loads((ROOT / "docs" / "study_curriculum_v5" / "summary.json").read_text())
    section = _curriculum_section(summary)
    spent = summary["curriculum"]["rollouts_to_joint_final"]
    assert "rollouts to joint's final: reached, restricted mean, ratio" in section
    assert all(f"<td>{reached_text(spent[arm])}</td>" in section for arm in summary["arms"])
    sentence = goal_text(summary)
    assert "x joint's rollouts (a step of it generates" in sentence and "`adaptive - joint`" in sentence
    assert "<code>adaptive - joint</code>" in section and "**" not in section and "`" not in section
    summary["curriculum"]["goal"]["rollouts_ratio"] = 0.7021  # just above the goal's line
    assert "with 0.702x joint's rollouts" in goal_text(summary)  # not "0.70x" beside "not met"
    spent["adaptive"]["ratio_to_joint"] = 0.7021
    assert reached_text(spent["adaptive"]).endswith(", 0.702x")
    summary["curriculum"]["goal"]["rollouts_ratio"] = None  # joint ended no higher than it started
    assert "no rollouts ratio: joint ends no higher than it starts" in goal_text(summary)
    assert "joint ends no higher than it starts (" not in section  # world v5: joint gains
    flat = {**summary, "arms": {**summary["arms"], "joint": {**summary["arms"]["joint"], "start_mean": 0.9}}}
    assert "<b>joint ends no higher than it starts (0.900 -> " in _curriculum_section(flat)  # the table says nothing
    summary["curriculum"]["goal"]["rollouts_ratio"] = 0.7021
    from spectrum_rl.cli import _print_claims

    _print_claims(summary)  # the study command's last line says it too
    out = capsys.readouterr().out
    assert "joint's final score with 0.702x joint's rollouts; adaptive - thompson" in out
    assert "(n=8, primary, p 0.00234)" in out and "Holm p 0.812)" in out  # p as the report prints it
    summary["curriculum"]["goal"]["adaptive - best_baseline"]["p_holm"] = None  # one seed: no test
    _print_claims(summary)
    assert "(Holm p n/a)" in capsys.readouterr().out
    del summary["curriculum"]["rollouts_to_joint_final"]  # a study budgeted in steps has no such column
    del summary["curriculum"]["goal"]
    assert "rollouts" not in _curriculum_section(summary)


def test_a_study_pools_each_levels_groups_and_scores_each_level():
    """Per arm and level: the final held-out score over seeds, and the groups rolled out pooled over
    seeds (the level's share of the domain's groups, the share of them without signal), also by
    distance to the frontier; the docs block and the report render both tables."""
    from spectrum_rl.study.docs_data import render
    from spectrum_rl.study.report import _levels_section
    from spectrum_rl.study.summary import _levels

    def run(final3: float, at3: float, dead3: float) -> dict:
        made = {2: (10.0, 8.0), 3: (at3, dead3), 4: (5.0, 5.0), 5: (5.0, 0.0)}  # level: (groups, without signal)
        groups = {}
        for level, (n, dead) in made.items():  # the frontier at 3 all run
            counts = {"groups": n, "zero_std": dead, "blind": dead}
            groups[f"s@{level}"] = groups["s@frontier" + (f"{level - 3:+d}" if level != 3 else "")] = counts
        return {"levels": {"final": {"s@2": 1.0, "s@3": final3}, "groups": groups}}

    levels = _levels([run(0.5, 30.0, 10.0), run(0.7, 50.0, 30.0)])
    assert levels["s@3"]["final"]["mean"] == pytest.approx(0.6) and levels["s@3"]["final"]["n"] == 2
    assert levels["s@3"]["groups_share"] == pytest.approx(80 / 120, abs=1e-4)  # 30 + 50 of the 120 groups made
    assert levels["s@3"]["zero_std_share"] == pytest.approx(40 / 80) and levels["s@2"]["zero_std_share"] == 0.8
    assert levels["s@frontier+2"]["groups_share"] == pytest.approx(10 / 120, abs=1e-4) and "final" not in levels["s@5"]
    assert _levels([{}]) == {}  # a run recorded before levels were
    summary = {"arms": {"adaptive": {"levels": levels}, "old": {"levels": {}}}}
    block = render(summary, "levels")
    assert "| `adaptive` | 2 | 1.00 | 0.60 ± 1.27 |" in block  # t(1) half-width of 0.5, 0.7: 12.706 * 0.1
    assert "| arm | @2 | @3 | @4 | @5 | below the frontier | at it | above it |" in block
    # above the frontier: levels 4 and 5 pooled, 20 of the 120 groups, 10 of them without signal
    assert "| `adaptive` | 17% (80%) | 67% (50%) | 8% (100%) | 8% (0%) | 17% (80%) | 67% (50%) | 17% (50%) |" in block
    assert "| `old` | – | – | – | – | – | – | – |" in block
    html = _levels_section(summary)
    assert "<th>below the frontier</th>" in html and "<td>67% (50%)</td>" in html
    assert render({"arms": {"a": {}}}, "levels").startswith("No run of this study recorded difficulty levels")


def test_a_steps_cost_follows_from_its_groups_without_signal():
    """P G (1 + d + ... + d^R) completions a step, per arm from its pooled levels (an arm's own batch
    size counted); what the primary arm's frontier leaves to save; the largest d meeting the goal
    at its steps ratio; the lowest d of an RL-only arm (an arm with demonstrations is not one)."""
    from spectrum_rl.study.curriculum import step_cost

    def levels(*shares: tuple[float, float], frontier: float | None = None) -> dict:
        out = {f"s@{k + 1}": {"groups_share": g, "zero_std_share": z} for k, (g, z) in enumerate(shares)}
        return out | ({"s@frontier": {"groups_share": 1.0, "zero_std_share": frontier}} if frontier is not None else {})

    spent = {"adaptive": (8.4, 0.9), "joint": (9.0, 1.0), "more": (18.0, 1.0)}
    summary = {
        "domains": ["s"],
        "spec": {
            "primary": "adaptive - joint", "prompts_per_step": 2, "group_size": 3,
            "custom_arms": {"more": {"training": {"prompts_per_step": 4}}},
        },
        "curriculum": {
            "rollouts_to_joint_final": {
                a: {"rollouts_per_step": c, "steps_ratio_to_joint": r, "budget": 1000} for a, (c, r) in spent.items()
            },
            "informative": {
                "adaptive": {"demonstrations_per_run": 0}, "joint": {}, "more": {"demonstrations_per_run": 100},
            },
        },
        "arms": {
            "adaptive": {"levels": levels((0.5, 0.2), (0.5, 0.6), frontier=0.5)},
            "joint": {"levels": levels((1.0, 0.5))},
            "more": {"levels": levels((1.0, 0.05))},
        },
    }  # fmt: skip
    c = step_cost(summary, rounds=1)
    assert c["arms"]["adaptive"] == {"d": 0.4, "estimate": 8.4, "measured": 8.4}  # 2 x 3 x (1 + 0.4)
    assert c["arms"]["joint"]["estimate"] == 9.0 and c["arms"]["more"]["estimate"] == pytest.approx(12 * 1.05)
    assert c["all_at_frontier"] == {"cost": 9.0, "of_step": 1.0, "of_rollouts": 0.9}
    assert c["goal_d"] == pytest.approx(1 / 6, abs=1e-4)  # 6 (1 + d) <= 0.7 x 9 / 0.9
    assert c["lowest_d"] == {"d": 0.2, "arm": "adaptive", "level": "s@1"}  # `more` trained on demonstrations
    assert step_cost(summary, rounds=2)["arms"]["adaptive"]["estimate"] == pytest.approx(6 * (1 + 0.4 + 0.16), abs=0.05)
    del summary["arms"]["adaptive"]["levels"]["s@frontier"]
    assert step_cost(summary, rounds=1) is None  # no frontier counted: nothing to say
