"""The study end to end (quick grid, tiny budget), `analyze` on a run, and the claim rules."""

from __future__ import annotations

import json

import pytest

from spectrum_rl.analysis.claims import judge_claims
from spectrum_rl.analysis.study import compare_arms
from spectrum_rl.cli import main
from tests.conftest import ROOT

VERDICTS = {"supported", "not supported", "inconclusive"}


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path, builtin_tiny, capsys):
    out = tmp_path / "study"
    rc = main(
        [
            "study",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--quick",
            "--max-steps",
            "3",
            "--output",
            str(out),
            "--arms",
            "rl_only,sft_only,staged,chord_mu,spectrum,joint",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"spec", "arms", "claims", "transfer", "order", "domains", "plasticity_domain"}
    assert set(summary["arms"]) == {"rl_only", "sft_only", "staged", "chord_mu", "spectrum", "joint"}
    compared = summary["comparisons"]
    assert set(compared) == {"spectrum - joint", "spectrum - staged", "spectrum - chord_mu"}
    assert all(c["final_mean"]["n"] == 2 and set(c["final"]) == set(summary["domains"]) for c in compared.values())
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
        assert arm["final_mean"]["n"] == 2 and arm["final_mean"]["ci_low"] <= arm["final_mean"]["ci_high"]
    assert set(summary["claims"]) == {"C1", "C2", "C3", "C4", "C5"}
    assert all(c["verdict"] in VERDICTS and c["rule"] for c in summary["claims"].values())
    assert summary["plasticity_domain"] not in summary["domains"]
    report = (out / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') >= 5 and "<h2>Claims</h2>" in report
    assert "<td>spectrum - staged</td>" in report and "| spectrum - chord_mu |" in (out / "claims.md").read_text()
    assert "http" not in report.split("<body>")[1]  # self-contained: nothing fetched
    printed = capsys.readouterr().out
    assert all(f"C{i}: inconclusive — " in printed for i in range(1, 6))  # 2 seeds are not evidence
    assert "smoke run" in printed and "not evidence" in printed
    assert all(c["verdict"] == "inconclusive" for c in summary["claims"].values())
    assert "not evidence" in (out / "claims.md").read_text() and "not evidence" in report


def test_analyze_run_directory(tmp_path, tiny_random_lm_dir, capsys):
    from tests.test_trainer import write_config

    path = write_config(
        tmp_path, tiny_random_lm_dir, {"steps": 3, "sft": {"mu": {"schedule": "staged", "sft_steps": 1}}}
    )
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert main(["analyze", str(run), "--plasticity", "sorting", "--plasticity-steps", "2"]) == 0
    result = json.loads((run / "analysis" / "analysis.json").read_text())
    assert set(result["phases"]) == {"sorting", "acrostic", "mean"}
    assert 0 <= result["sparsity"]["unchanged_fraction"] < 1
    assert result["plasticity"]["domain"] == "sorting" and len(result["plasticity"]["scores"]) >= 2
    assert (run / "analysis" / "held_out.png").exists() and (run / "analysis" / "kl_to_base.png").exists()
    assert main(["analyze", str(tmp_path / "nope")]) == 2


def _run(final, start, kl, auc, entropy=None, classes=None, mu=None, unchanged=0.5):
    return {
        "sparsity": {"unchanged_fraction": unchanged},
        "final_mean": final,
        "eval_mean": ([0, 10], [start, final]),
        "kl_to_base": {"0": 0.0, "10": kl},
        "plasticity": {"auc": auc},
        "entropy": entropy or {},
        "entropy_class": classes or {},
        "mu": mu or ([], []),
    }


def test_claim_rules_on_scripted_numbers():
    from types import SimpleNamespace

    config = SimpleNamespace(
        tasks=[SimpleNamespace(name="s", kind="structured"), SimpleNamespace(name="c", kind="creative")]
    )
    runs = {
        "staged": [
            _run(
                0.40,
                0.5,
                0.9,
                0.01,
                mu=([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                classes={
                    "execution": (list(range(1, 11)), [2, 2, 2, 1.8, 1.6, 1.4, 1.2, 1.2, 1.2, 1.2]),
                    "planning": (list(range(1, 11)), [1, 1, 1, 1, 1, 1, 1.1, 1.2, 1.3, 1.4]),
                },
            )
            for _ in range(3)
        ],
        "chord_mu": [_run(0.60 + 0.01 * i, 0.5, 0.3, 0.2) for i in range(3)],
        "rl_only": [_run(0.55, 0.5, 0.2, 0.25, unchanged=0.8 + 0.01 * i) for i in range(3)],
        "structured_first": [_run(0.70 + 0.01 * i, 0.5, 0.4, 0.15) for i in range(3)],
    }
    runs["joint"] = runs["rl_only"]
    runs["sft_only"] = [_run(0.5, 0.5, 0.5, 0.1, unchanged=0.1 + 0.01 * i) for i in range(3)]
    arms = {
        "staged": {"phases": [{"mean": {"disruption": {"start": 1}}}] * 3},
        "rl_only": {
            "entropy_slope": {"s": -0.01, "c": 0.02},
            "sparsity_unchanged": {"mean": 0.8, "ci_low": 0.78, "ci_high": 0.82},
            "rank_ratio": {"mean": 0.99},
        },
        "sft_only": {"sparsity_unchanged": {"mean": 0.1, "ci_low": 0.09, "ci_high": 0.11}},
    }
    claims = judge_claims(runs, arms, {"rl_only": 0.6}, config)
    assert claims["C1"]["verdict"] == "supported"
    assert claims["C2"]["verdict"] == "supported"  # lower KL, higher plasticity across 9 runs
    assert claims["C3"]["verdict"] == "supported"
    assert claims["C4"]["verdict"] == "supported"
    assert claims["C5"]["verdict"] == "supported"
    runs["chord_mu"] = [_run(0.30 + 0.01 * i, 0.5, 0.3, 0.2) for i in range(3)]
    assert judge_claims(runs, arms, {"rl_only": 0.6}, config)["C1"]["verdict"] == "not supported"
    assert judge_claims({}, {}, {}, config)["C4"]["verdict"] == "inconclusive"


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


def test_spectrum_differences_are_paired_by_seed_over_the_seeds_both_ran():
    def run(final: float, extra: float) -> dict:
        return {"final_mean": final, "final": {"a": final, "b": extra}}

    runs = {
        "spectrum": [run(0.5, 0.1), run(0.7, 0.1), run(0.6, 0.1)],
        "staged": [run(0.4, 0.2), run(0.5, 0.2), run(0.5, 0.2), run(9.0, 9.0), run(9.0, 9.0)],  # seeds 3, 4 unpaired
    }
    out = compare_arms(runs, "spectrum", ["joint", "staged", "chord_mu"])
    assert list(out) == ["spectrum - staged"]  # only the arms that ran
    diff = out["spectrum - staged"]
    assert diff["final_mean"]["n"] == 3 and diff["final_mean"]["mean"] == pytest.approx(0.1333, abs=1e-4)
    assert "paired by seed" in diff["final_mean"]["method"]
    assert diff["final"]["b"]["mean"] == pytest.approx(-0.1) and diff["final"]["b"]["ci_low"] == pytest.approx(-0.1)
    assert compare_arms(runs, "absent", ["staged"]) == {}
