"""Command-line behaviour users expect: `--set` overrides validated and reported like the file,
one `--output-dir` spelling, `expert_field` that follows the data, and model loading that never
builds the built-in model."""

from __future__ import annotations

import json

import pytest

from spectrum_rl.cli import main
from spectrum_rl.config import load_config
from spectrum_rl.errors import ConfigError

QA_ROWS = [{"question": f"capital of c{i}?", "answer": f"city{i}"} for i in range(12)]


def qa_config(tmp_path, extra: str = "") -> str:
    """A TRL-style question/answer file (no expert column), one domain, default expert_field."""
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA_ROWS))
    path = tmp_path / "qa.yaml"
    path.write_text(
        "domains:\n  - {name: capitals, kind: structured, source: {type: file, path: qa.jsonl},\n"
        "     eval: {size: 4}, reward: [{type: exact_match}]}\n" + extra
    )
    return str(path)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_set_overrides_fields_and_is_validated_like_the_file(tmp_path, capsys):
    path = qa_config(tmp_path)
    config = load_config(
        path,
        [
            "training.steps=7",
            "scheduler.policy=adaptive",
            "domains[0].eval.size=3",
            "training.sft.per_domain={capitals: {type: rl_only}}",
        ],
    )
    assert config.training.steps == 7 and config.scheduler.policy.type == "adaptive"
    assert config.domains[0].eval.size == 3 and config.training.sft.per_domain["capitals"].type == "rl_only"

    assert main(["validate", path, "--set", "training.steps=abc"]) == 2
    assert one_line_error(capsys).startswith(
        "error: --set training.steps=abc: training.steps: expected a valid integer"
    )
    assert main(["validate", path, "--set", "training.lerning_rate=1e-4"]) == 2
    assert (
        "--set training.lerning_rate=1e-4: training.lerning_rate: unknown key 'lerning_rate'; did you mean "
        "'learning_rate'?" in one_line_error(capsys)
    )
    assert main(["validate", path, "--set", "scheduler.policy=adaptve"]) == 2
    assert "did you mean 'adaptive'?; expected one of joint" in one_line_error(capsys)
    assert main(["validate", path, "--set", "training.steps"]) == 2
    assert "--set training.steps: expected FIELD=VALUE" in one_line_error(capsys)
    # an error found later, while the domains are built, names the override that set the field
    assert main(["validate", path, "--set", "training.steps=5", "--set", "domains[0].source.path=nope.jsonl"]) == 2
    assert "--set domains[0].source.path=nope.jsonl: domains[0].source.path: file not found" in one_line_error(capsys)


def test_a_question_answer_file_trains_rl_only_without_an_expert_field(tmp_path, capsys):
    path = qa_config(tmp_path)
    assert main(["validate", path]) == 0
    capsys.readouterr()
    # a schedule that trains on demonstrations, on a domain that has none: one error with the fix
    assert main(["validate", path, "--set", "training.sft.mu=cosine"]) == 2
    line = one_line_error(capsys)
    assert "domains[0].expert_field: domain 'capitals' has no expert demonstrations" in line
    assert "expert_field: answer" in line
    assert main(["validate", path, "--set", "training.sft.mu=cosine", "--set", "domains[0].expert_field=answer"]) == 0


def test_expert_field_auto_uses_the_expert_column_when_present(tmp_path):
    from spectrum_rl.domains import build_domains

    rows = [dict(r, expert=f"the answer is city{i}") for i, r in enumerate(QA_ROWS)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "qa.yaml"
    path.write_text(
        "domains:\n  - {name: capitals, kind: structured, source: {type: file, path: qa.jsonl},\n"
        "     eval: {size: 4}, reward: [{type: exact_match}]}\n"
    )
    config = load_config(path)
    assert config.domains[0].expert_field == "auto"
    (domain,) = build_domains(config, tmp_path)
    assert domain.expert_field == "expert" and domain.eval_examples()[0].expert.startswith("the answer is")


def test_study_and_bootstrap_take_output_dir_and_keep_the_old_spelling():
    from spectrum_rl.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["study", "c.yaml", "--output-dir", "x"]).output_dir == "x"
    assert parser.parse_args(["study", "c.yaml", "--output", "y"]).output_dir == "y"
    assert parser.parse_args(["bootstrap", "--output-dir", "z"]).output_dir == "z"
    assert "--output " not in parser._subparsers._group_actions[0].choices["study"].format_help()


def test_loading_a_builtin_model_never_builds_it(tmp_path, monkeypatch):
    """Where the package ships no weights (a trimmed install), loading names the fix, builds nothing."""
    from spectrum_rl import models

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(models, "SHIPPED_DIR", tmp_path / "not-shipped")
    with pytest.raises(ConfigError, match="not built yet"):
        models.load_causal_lm("builtin:tiny")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_fails_before_the_builtin_model_is_built(tmp_path, monkeypatch, capsys):
    from spectrum_rl import models

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "taken").write_text("a file, not a folder")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"run: {{output_dir: {tmp_path / 'taken'}}}\n"
        "domains: [{name: a, kind: structured, source: {type: builtin, generator: sorting},\n"
        "         reward: [{type: exact_match}]}]\n"
    )
    assert main(["train", str(path)]) == 2
    assert "run.output_dir" in one_line_error(capsys)
    assert not (tmp_path / "cache").exists()


def test_a_users_file_domain_gets_the_start_to_end_table_and_the_adaptive_guards(tmp_path, capsys, tiny_random_lm_dir):
    """A local question/answer file under the adaptive policy: the run ends with the held-out table
    (start, best, end, the flag column) and the run's BWT, as for the built-in world."""
    path = qa_config(tmp_path)
    sets = [
        f"model.name_or_path={tiny_random_lm_dir}",
        "scheduler.policy=adaptive",
        "training.steps=2",
        "training.prompts_per_step=2",
        "training.group_size=2",
        "training.max_new_tokens=4",
        "training.save_every=0",
        "eval.every=1",
        "eval.max_new_tokens=4",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    assert main(["train", path, *[a for s in sets for a in ("--set", s)]]) == 0
    err = capsys.readouterr().err
    assert "held-out score per domain" in err and "capitals" in err and "BWT (mean of end - best)" in err


def test_score_reads_the_completion_from_stdin_or_says_what_it_takes(capsys, monkeypatch):
    import io

    from spectrum_rl.domains import build_domains
    from tests.conftest import ROOT

    config = ROOT / "configs" / "quickstart.yaml"
    example = build_domains(load_config(config), ROOT / "configs")[1].eval_examples()[0]  # sorting
    monkeypatch.setattr("sys.stdin", io.StringIO(example.answer + "\n"))
    assert main(["score", str(config), "--domain", "sorting", "--index", "0", "--completion", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("total: 1.1000  (1*exact_match")  # + its format term
    assert main(["score", str(config), "--domain", "sorting", "--index", "0", "--completion", example.answer]) == 2
    assert "it takes a file holding the completion, or - to read it from stdin" in capsys.readouterr().err


def test_bootstrap_rebuilds_a_recipe_with_its_own_seed_unless_given_one(tmp_path, monkeypatch):
    import spectrum_rl.bootstrap as bootstrap_module
    from spectrum_rl.bootstrap import RECIPES

    built = []

    def fake_bootstrap(cfg, output=None, force=False, name="tiny"):
        built.append(cfg)
        return tmp_path

    monkeypatch.setattr(bootstrap_module, "bootstrap", fake_bootstrap)
    monkeypatch.setattr(bootstrap_module, "compare_with_shipped", lambda out, name: (["compared"], True))
    assert RECIPES["ladder_v3"].seed != 0
    assert main(["bootstrap", "--model", "ladder_v3"]) == 0
    assert built[-1] == RECIPES["ladder_v3"]  # the shipped recipe, compared with the shipped weights
    assert main(["bootstrap", "--model", "ladder_v3", "--seed", "0", "--steps", "5"]) == 0
    assert (built[-1].seed, built[-1].steps) == (0, 5)
