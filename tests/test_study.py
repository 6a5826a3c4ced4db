"""The study end to end (quick grid, tiny budget, --reanalyze), `analyze` on a run, and the family of
comparisons (the claim rules are in tests/test_claims.py)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from scipy.stats import ttest_rel

from spectrum_rl.cli import main
from spectrum_rl.study import docs_data
from spectrum_rl.study.comparisons import compare_family, family_pairs
from tests.conftest import ROOT

VERDICTS = {"supported", "not supported", "inconclusive"}


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path, builtin_tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output folder: the spectrum arm still finds the probe's transfer.json
    out = tmp_path / "study"
    rc = main(
        [
            "study",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--quick",
            "--max-steps",
            "3",
            "--output",
            "study",
            "--arms",
            "rl_only,sft_only,staged,chord_mu,spectrum,joint",
            "--set",
            "study.first_seed=5",
        ]
    )
    assert rc == 0
    said = capsys.readouterr().out  # each run's line counts the runs and estimates the wait
    # two runs at a time: either of the first two may end first
    assert re.search(r"  \[1/10\] rl_only seed [56]: held-out mean ", said)
    assert " left\n" in said and "  [10/10] " in said
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"spec", "arms", "claims", "transfer", "order", "domains", "plasticity_domain"}
    assert set(summary["arms"]) == {"rl_only", "sft_only", "staged", "chord_mu", "spectrum", "joint"}
    family = summary["comparisons"]
    compared = family["comparisons"]
    assert set(compared) == {
        "sft_only - joint",
        "staged - joint",
        "chord_mu - joint",
        "spectrum - joint",
        "spectrum - staged",
        "spectrum - chord_mu",
        "chord_mu - staged",
    }
    assert family["family_size"] == 7 and family["domain_family_size"] == 7 * len(summary["domains"])
    assert all(c["final_mean"]["n"] == 2 and set(c["final"]) == set(summary["domains"]) for c in compared.values())
    # every seed's run is kept, so the study can be re-analysed without training
    assert [len(summary["runs"][a]) for a in ("rl_only", "spectrum")] == [2, 2] and "joint" not in summary["runs"]
    assert sorted(p.name for p in (out / "runs").glob("spectrum-s*")) == ["spectrum-s5", "spectrum-s6"]  # first_seed
    assert "run seeds from 5" in docs_data.render(summary, "setup")
    for arm in summary["arms"].values():
        assert set(arm) >= {
            "final_mean",
            "final",
            "kl_to_base",
            "plasticity_auc",
            "sparsity_unchanged",
            "rank_ratio",
            "phases",
        }
        assert arm["final_mean"]["n"] == 2
    assert set(summary["claims"]) == {"C1", "C2", "C3", "C4", "C5"}
    assert all(c["verdict"] in VERDICTS and c["rule"] for c in summary["claims"].values())
    assert summary["plasticity_domain"] not in summary["domains"]
    report = (out / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') >= 5 and "<h2>Claims</h2>" in report
    assert "<td>spectrum - staged</td>" in report and "| spectrum - chord_mu |" in (out / "claims.md").read_text()
    # --reanalyze recomputes the same summary from the kept runs (timings and all)
    (out / "report.html").unlink()
    assert main(["study", "--reanalyze", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == summary and (out / "report.html").exists()
    assert main(["study", str(ROOT / "configs" / "quickstart.yaml"), "--reanalyze", str(out)]) == 2
    assert "http" not in report.split("<body>")[1]  # self-contained: nothing fetched
    printed = said + capsys.readouterr().out
    assert all(f"C{i}: inconclusive — " in printed for i in range(1, 6))  # 2 seeds are not evidence
    assert "smoke run" in printed and "not evidence" in printed
    assert all(c["verdict"] == "inconclusive" for c in summary["claims"].values())
    assert "not evidence" in (out / "claims.md").read_text() and "not evidence" in report


def test_analyze_run_directory(tmp_path, tiny_random_lm_dir, capsys):
    from tests.test_trainer import write_config

    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 3, "sft": {"mu": {"type": "staged", "sft_steps": 1}}})
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert main(["analyze", str(run), "--plasticity", "sorting", "--plasticity-steps", "2"]) == 0
    result = json.loads((run / "analysis" / "analysis.json").read_text())
    assert set(result["phases"]) == {"sorting", "acrostic", "mean"}
    assert 0 <= result["sparsity"]["unchanged_fraction"] < 1
    assert result["plasticity"]["domain"] == "sorting" and len(result["plasticity"]["scores"]) >= 2
    assert (run / "analysis" / "held_out.png").exists() and (run / "analysis" / "kl_to_base.png").exists()
    assert main(["analyze", str(tmp_path / "nope")]) == 2


def test_continual_metrics_of_a_staged_run(tmp_path):
    from spectrum_rl.analysis.analyze import staged_continual_metrics

    mixtures = [{"a": 1.0, "b": 0.0}] * 2 + [{"a": 0.1, "b": 0.9}] * 2
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "mixture": m}) + "\n" for i, m in enumerate(mixtures))
    )
    evals = [
        {"step": 0, "eval/a": 0.1, "eval/b": 0.2},
        {"step": 2, "eval/a": 0.6, "eval/b": 0.3},
        {"step": 4, "eval/a": 0.4, "eval/b": 0.7},
    ]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    got = staged_continual_metrics(tmp_path)
    # R = [[0.6, 0.3], [0.4, 0.7]], b = [0.1, 0.2]: ACC 0.55, BWT 0.4-0.6 = -0.2, FWT 0.3-0.2 = 0.1
    assert got == {"order": ["a", "b"], "ACC": 0.55, "BWT": -0.2, "FWT": 0.1}


def test_continual_metrics_never_use_an_eval_from_before_the_phase(tmp_path):
    """Phases of 12 steps, evals every 15: phase 1 (steps 13-24) holds no eval, so the eval at
    step 0 or 12 must not stand in for "after phase 1" (that gave a fake BWT)."""
    from spectrum_rl.analysis.analyze import staged_continual_metrics

    mixtures = [{"a": 1.0, "b": 0.0}] * 12 + [{"a": 0.0, "b": 1.0}] * 12
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "mixture": m}) + "\n" for i, m in enumerate(mixtures))
    )
    evals = [{"step": s, "eval/a": 0.1 * (s == 0) + 0.5 * (s > 0), "eval/b": 0.2} for s in (0, 15)]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    got = staged_continual_metrics(tmp_path)
    assert got["order"] == ["a", "b"] and "ACC" not in got and "BWT" not in got
    assert got["not_measured"] == "no eval inside phase a (steps 1-12)"


def test_the_family_is_paired_by_seed_over_the_seeds_both_ran_and_holm_corrected():
    def run(final: float, extra: float) -> dict:
        return {"final_mean": final, "final": {"a": final, "b": extra}}

    # 7 seeds: continuous differences get the paired t-test (checked against scipy's), a domain whose
    # difference is the same in every seed the exact sign-flip test
    staged = [0.4, 0.5, 0.5, 0.5, 0.6, 0.4, 0.45]
    spectrum = [0.7, 0.7, 0.6, 0.4, 0.85, 0.45, 0.6]  # - staged: +0.3 +0.2 +0.1 -0.1 +0.25 +0.05 +0.15
    chord_mu = [0.45, 0.4, 0.3, 0.2, 0.7, 0.15, 0.55]  # below spectrum in every seed, around staged
    runs = {
        "spectrum": [run(x, 0.1) for x in spectrum],
        "staged": [run(x, 0.2) for x in staged] + [run(9.0, 9.0), run(9.0, 9.0)],  # seeds 7, 8 unpaired
        "chord_mu": [run(x, b) for x, b in zip(chord_mu, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1], strict=True)],
    }
    pairs = family_pairs(list(runs))
    assert pairs == [("spectrum", "staged"), ("spectrum", "chord_mu"), ("chord_mu", "staged")]  # no joint ran
    family = compare_family(runs, pairs)
    assert "t-test" in family["method"] and "sign-flip" in family["method"] and "Holm" in family["method"]
    assert family["family_size"] == 3 and family["domain_family_size"] == 6
    diff = family["comparisons"]["spectrum - staged"]
    assert diff["final_mean"]["n"] == 7 and diff["final_mean"]["mean"] == pytest.approx(0.95 / 7, abs=1e-4)
    assert "paired by seed" in diff["final_mean"]["method"] and "paired t-test" in diff["final_mean"]["method"]
    # domain b differs by -0.1 in every seed: no t interval (zero spread), but an exact p of 2/2^7
    b = diff["final"]["b"]
    assert b["mean"] == pytest.approx(-0.1) and b["ci_low"] is None and b["ci_high"] is None
    assert b["p"] == pytest.approx(2 / 2**7) and b["adjusted"]["ci_low"] is None and not b["excludes_0"]
    assert "sign-flip" in b["method"]
    # spectrum - chord_mu: the smallest p, x3 by Holm, still < 0.05. spectrum - staged: p = 0.037 < 0.05
    # raw, but Holm's multiplier for the second smallest p is 2: 0.074, not excluded
    raw = {name: c["final_mean"]["p"] for name, c in family["comparisons"].items()}
    holm = {name: c["final_mean"]["p_holm"] for name, c in family["comparisons"].items()}
    expected = {"spectrum - staged": (spectrum, staged), "spectrum - chord_mu": (spectrum, chord_mu)}
    for name, (x, y) in expected.items():
        assert raw[name] == pytest.approx(ttest_rel(x, y).pvalue, abs=1e-6)
    assert holm["spectrum - chord_mu"] == pytest.approx(3 * raw["spectrum - chord_mu"], abs=1e-6)
    assert holm["spectrum - chord_mu"] < 0.05
    assert raw["spectrum - staged"] < 0.05
    second = sorted(raw, key=raw.get)[1]
    assert second == "spectrum - staged"
    assert holm[second] == pytest.approx(min(1.0, 2 * raw[second]), abs=1e-6) and holm[second] > 0.05
    assert holm["chord_mu - staged"] == pytest.approx(raw["chord_mu - staged"])  # the largest: x1 (running max)
    assert family["comparisons"]["spectrum - chord_mu"]["final_mean"]["excludes_0"]
    assert not diff["final_mean"]["excludes_0"]
    assert not family["comparisons"]["chord_mu - staged"]["final_mean"]["excludes_0"]
    assert family["comparisons"]["spectrum - staged"]["final_mean"]["adjusted"]["confidence"] == pytest.approx(
        1 - 0.05 / 3
    )
    # The same runs with "spectrum - staged" pre-registered: tested alone (its raw p 0.037 < 0.05
    # now excludes 0), out of the family, which Holm-corrects the two others over 2
    pre = compare_family(runs, pairs, primary="spectrum - staged")
    primary = pre["primary"]
    assert primary["comparison"] == "spectrum - staged" and primary["role"] == "primary"
    assert primary["p"] == primary["p_holm"] == pytest.approx(raw["spectrum - staged"]) and primary["excludes_0"]
    chord = pre["comparisons"]["spectrum - chord_mu"]["final_mean"]
    assert pre["family_size"] == 2 and chord["p_holm"] == pytest.approx(2 * raw["spectrum - chord_mu"], abs=1e-6)
    power = primary["power"]
    assert power["smallest_p"] == pytest.approx(2 / 128) and 0 < power["detectable_at_80pct"] < 1


def test_a_joint_arm_that_ran_on_its_own_is_in_the_curves_and_tables():
    from spectrum_rl.study.arms import own_runs
    from spectrum_rl.study.plots import _curve_arms
    from spectrum_rl.study.report import _course_table

    run = {"eval_mean": [[0, 5], [0.1, 0.3]], "eval": {"a": [[0, 5], [0.1, 0.3]]}}
    assert list(own_runs({"joint": [run], "adaptive": [run]})) == ["joint", "adaptive"]  # no rl_only: its own runs
    assert list(own_runs({"rl_only": [run], "joint": [run]})) == ["rl_only"]  # rl_only's runs under another name
    assert _curve_arms({"joint": [run, run], "adaptive": [run, run]}) == ["joint", "adaptive"]
    assert "<td>joint</td>" in _course_table({"joint": [run, run], "adaptive": [run, run]})


def test_a_report_of_rl_only_arms_says_so_instead_of_an_empty_legend():
    import warnings

    import matplotlib.pyplot as plt

    from spectrum_rl.study.plots import _legend_or_note

    fig, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend has nothing to show
        _legend_or_note(ax, "mu is 0 throughout")
    assert [t.get_text() for t in ax.texts] == ["mu is 0 throughout"] and ax.get_legend() is None
    ax.plot([0, 1], [0, 1], label="staged")
    _legend_or_note(ax, "unused")
    assert ax.get_legend() is not None
    plt.close(fig)


def test_a_wait_reads_in_the_unit_a_person_would_use():
    from spectrum_rl.study.runner import _duration

    assert [_duration(s) for s in (40, 89, 720, 5399, 5400, 9000)] == [
        "40 s",
        "89 s",
        "12 min",
        "90 min",
        "1.5 h",
        "2.5 h",
    ]


def test_a_study_of_one_domain_runs_without_the_plasticity_probe(tmp_path, builtin_tiny, capsys):
    """One domain leaves none to hold out: the study runs its arms without the probe (C2 is not
    measured), and --plasticity-domain is checked before anything runs."""
    config = tmp_path / "one.yaml"
    one = {"name": "sorting", "kind": "structured", "source": {"type": "builtin", "generator": "sorting"}}
    config.write_text(yaml.safe_dump({"domains": [one | {"reward": [{"type": "exact_match"}]}]}))
    args = ["study", str(config), "--seeds", "1", "--max-steps", "2", "--arms", "rl_only,joint", "--output-dir"]
    assert main([*args, str(tmp_path / "out"), "--set", "study.max_rollouts=60"]) == 0
    said = capsys.readouterr().out  # a budget in completions is named as such, the steps as its cap
    assert "60 completions each (at most 2 steps); no plasticity probe (one domain: none to hold out for C2)" in said
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["plasticity_domain"] is None and summary["domains"] == ["sorting"]
    assert summary["arms"]["rl_only"]["plasticity_auc"] is None and summary["claims"]["C2"]["verdict"] == "inconclusive"
    assert "plasticity domain\n<code>none</code>" in (tmp_path / "out" / "report.html").read_text()
    for flag, said in (("sorting", "is the config's only domain"), ("sortin", "did you mean 'sorting'?")):
        assert main([*args, str(tmp_path / flag), "--plasticity-domain", flag]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / flag).exists()


def test_analyze_probes_a_file_domain_from_any_folder(tmp_path, tiny_random_lm_dir, capsys, monkeypatch):
    """The run's config.yaml says where its relative paths start, so `analyze --plasticity` finds
    a file domain's data from another working folder; a domain the run lacks is a one-line error."""
    from tests.test_trainer import write_config

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "qa.jsonl").write_text(
        "".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(12))
    )
    qa = {"name": "qa", "kind": "structured", "source": {"type": "file", "path": "qa.jsonl"}, "eval": {"size": 4}}
    path = write_config(folder, tiny_random_lm_dir, {"steps": 1}, domains=[qa | {"reward": [{"type": "exact_match"}]}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(path)]) == 0
    run = folder / "run"
    assert (run / "config.yaml").read_text().startswith(f"# relative paths in this config start from {folder}\n")
    assert main(["analyze", str(run), "--plasticity", "qa", "--plasticity-steps", "2"]) == 0
    assert json.loads((run / "analysis" / "analysis.json").read_text())["plasticity"]["domain"] == "qa"
    capsys.readouterr()
    assert main(["analyze", str(run), "--plasticity", "q"]) == 2
    assert "--plasticity: no domain 'q' in " in capsys.readouterr().err
