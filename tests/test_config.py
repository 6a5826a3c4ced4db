"""Config schema and CLI error contract: bad input -> exit 2, one line naming file and field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from spectrum_rl.cli import main
from spectrum_rl.config import Config, load_config
from spectrum_rl.errors import ConfigError
from tests.conftest import ROOT

GOOD_TASK = """
  - name: add
    kind: structured
    source: {type: builtin, generator: addition}
    reward: [{type: exact_match}]
"""


def _cfg(domains: str = GOOD_TASK, extra: str = "") -> str:
    return "domains:" + textwrap.dedent(domains).rstrip() + "\n" + textwrap.dedent(extra)


# (case id, YAML text, substring that must be in the one-line error)
BAD_CONFIGS = [
    ("yaml_syntax", "domains: [\n  {name: a\n", "YAML syntax error"),
    ("empty_file", "", "empty"),
    ("top_level_list", "- a\n- b\n", "expected a mapping"),
    ("missing_domains", "run: {name: x}\n", "domains: missing required key 'domains'"),
    ("unknown_section", _cfg(extra="trainig: {steps: 3}\n"), "did you mean 'training'"),
    ("unknown_key", _cfg(extra="training: {lerning_rate: 0.1}\n"), "training.lerning_rate: unknown key"),
    # a key of another section says which
    (
        "key_of_another_section",
        _cfg(extra="training: {luffy: true}\n"),
        "unknown key 'luffy'; it is a key of training.sft;",
    ),
    ("key_of_a_domain", _cfg(extra="training: {kind: creative}\n"), "unknown key 'kind'; it is a key of domains[i];"),
    (
        "bad_kind",
        _cfg(GOOD_TASK.replace("structured", "struct")),
        "domains[0].kind: expected one of structured, creative",
    ),
    (
        "unknown_reward",
        _cfg(GOOD_TASK.replace("exact_match", "exact")),
        "domains[0].reward[0].type: unknown reward type 'exact'; did you mean 'exact_match'",
    ),
    (
        "reward_no_type",
        _cfg(GOOD_TASK.replace("{type: exact_match}", "{weight: 1}")),
        "domains[0].reward[0].type: missing 'type'",
    ),
    (
        "negative_weight",
        _cfg(GOOD_TASK.replace("{type: exact_match}", "{type: exact_match, weight: -1}")),
        "domains[0].reward[0].weight",
    ),
    ("group_size_1", _cfg(extra="training: {group_size: 1}\n"), "training.group_size"),
    ("steps_0", _cfg(extra="training: {steps: 0}\n"), "training.steps"),
    ("temperature_string", _cfg(extra="training: {temperature: hot}\n"), "training.temperature"),
    ("top_p_range", _cfg(extra="training: {top_p: 1.5}\n"), "training.top_p"),
    ("bad_dtype", _cfg(extra="model: {dtype: fp8}\n"), "model.dtype: expected one of"),
    (
        "unknown_source",
        _cfg(GOOD_TASK.replace("type: builtin", "type: web")),
        "domains[0].source.type: unknown source type 'web'",
    ),
    (
        "unknown_generator",
        _cfg(GOOD_TASK.replace("generator: addition", "generator: additon")),
        "domains[0].source.generator",
    ),
    (
        "bad_knob",
        _cfg(GOOD_TASK.replace("generator: addition}", "generator: addition, difficulty: {digitz: 2}}")),
        "domains[0].source.difficulty",
    ),
    ("duplicate_domain", _cfg(GOOD_TASK + GOOD_TASK), "domains[1].name: duplicate domain name 'add'"),
    (
        "unknown_prereq",
        _cfg(GOOD_TASK + "    after: [ad]\n"),
        "domains[0].after[0]: unknown domain 'ad'; did you mean 'add'",
    ),
    ("self_prereq", _cfg(GOOD_TASK + "    after: [add]\n"), "domains[0].after[0]"),
    (
        "cycle",
        _cfg(GOOD_TASK + "    after: [b]\n" + GOOD_TASK.replace("name: add", "name: b") + "    after: [add]\n"),
        "prerequisite cycle",
    ),
    ("empty_reward", _cfg(GOOD_TASK.replace("[{type: exact_match}]", "[]")), "domains[0].reward"),
    ("bad_name", _cfg(GOOD_TASK.replace("name: add", "name: my domain")), "domains[0].name: a domain name is ASCII"),
    (
        "bad_on_error",
        _cfg(GOOD_TASK.replace("{type: exact_match}", "{type: exact_match, on_error: ignore}")),
        "domains[0].reward[0].on_error: expected one of fail, zero, skip; found 'ignore'",
    ),
    ("bad_primary", _cfg(extra="study: {primary: adaptive-joint}\n"), "two arms with ' - ' between them"),
    (
        "builtin_model",
        _cfg(extra="model: {name_or_path: 'builtin:huge'}\n"),
        "model.name_or_path: unknown built-in model",
    ),
    ("missing_model_dir", _cfg(extra="model: {name_or_path: ./no/such/model}\n"), "model.name_or_path"),
    ("duplicate_yaml_key", _cfg(extra="run: {seed: 1}\nrun: {seed: 2}\n"), "duplicate key 'run'"),
    (
        "bad_regex",
        _cfg(GOOD_TASK.replace("{type: exact_match}", "{type: format, pattern: '(['}")),
        "domains[0].reward[0].pattern",
    ),
    (
        "python_no_import",
        _cfg(GOOD_TASK.replace("{type: exact_match}", "{type: python, function: 'no_such_mod_xyz:fn'}")),
        "domains[0].reward[0].function",
    ),
    (
        "weights_unknown",
        _cfg(extra="scheduler: {policy: {type: joint, weights: {ad: 1}}}\n"),
        "scheduler.policy.weights.ad: unknown domain",
    ),
    (
        "weights_negative",
        _cfg(extra="scheduler: {policy: {type: joint, weights: {add: -1}}}\n"),
        "scheduler.policy.weights",
    ),
    ("bad_template", _cfg(GOOD_TASK + "    prompt: '{problem}'\n"), "domains[0].prompt: template field '{problem}'"),
    (
        "missing_answer_col",
        _cfg(GOOD_TASK + "    answer_field: solution\n"),
        "domains[0].answer_field: row field 'solution'",
    ),
    ("eval_size_0", _cfg(GOOD_TASK + "    eval: {size: 0}\n"), "domains[0].eval.size"),
    ("task_not_mapping", "domains: [3]\n", "domains[0]"),
    (
        "missing_file",
        _cfg(GOOD_TASK.replace("{type: builtin, generator: addition}", "{type: file, path: nope.jsonl}")),
        "domains[0].source.path",
    ),
    (
        "corrupt_jsonl",
        _cfg(GOOD_TASK.replace("{type: builtin, generator: addition}", "{type: file, path: bad.jsonl}")),
        "line 2",
    ),
]


@pytest.mark.parametrize("case,text,expected", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(case, text, expected, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": \n')
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0]
    assert expected in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_enough_distinct_bad_configs():
    assert len({c[0] for c in BAD_CONFIGS}) >= 20


def test_error_points_at_line_and_column(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(_cfg(GOOD_TASK.replace("exact_match", "exact")))
    assert main(["validate", str(path)]) == 2
    # `reward: [{type: exact}]` is on line 5 of the file
    assert f"{path}:5:" in capsys.readouterr().err


def test_non_utf8_config(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"domains: \xff\xfe\n")
    assert main(["validate", str(path)]) == 2
    assert "UTF-8" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_console_script_no_traceback_and_debug_shows_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_cfg(extra="training: {steps: 0}\n"))
    cmd = [sys.executable, "-m", "spectrum_rl"]
    plain = subprocess.run([*cmd, "validate", str(path)], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    debug = subprocess.run([*cmd, "--debug", "validate", str(path)], capture_output=True, text=True)
    assert "Traceback" in debug.stderr


def test_defaults_are_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if hasattr(sub, "model_fields"):
                yield from walk(sub)
            else:
                yield model.__name__, name, field

    undocumented = [(m, n) for m, n, f in walk(Config) if not f.description and n not in ("source", "reward", "eval")]
    assert undocumented == []


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_example_configs_validate(name, capsys):
    assert main(["validate", str(ROOT / "configs" / name)]) == 0
    assert "config is valid" in capsys.readouterr().out


def test_quickstart_has_structured_and_creative_hybrid_domains():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    kinds = [t.kind for t in cfg.domains]
    assert kinds.count("structured") >= 4 and kinds.count("creative") >= 2
    assert all(len(t.reward) >= 1 for t in cfg.domains)
    assert sum(len(t.reward) > 1 for t in cfg.domains) >= 5  # hybrid rewards


def test_domains_command_lists_samples_and_dot(capsys):
    path = str(ROOT / "configs" / "quickstart.yaml")
    assert main(["domains", path]) == 0
    out = capsys.readouterr().out
    for name in ("addition", "sorting", "acrostic", "letter_words"):
        assert name in out
    assert main(["domains", path, "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and '"sorting" -> "counting"' in dot
    assert main(["domains", str(ROOT / "configs" / "curriculum_v5.yaml"), "--samples", "3"]) == 0
    out = capsys.readouterr().out  # a ladder: its range, and samples spanning it
    assert "  levels: 1-6\n" in out and "  sample: level 1, 'shift: " in out and "  sample: level 6, " in out
    from spectrum_rl.sources.builtin import moved

    shift = re.search(r"sample: level 1, 'shift: (\w)\\n' -> '(\w)'", out)  # each with the answer it is scored on
    assert shift and moved(shift[1], lambda j: j) == shift[2]


def test_overrides_are_validated(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_cfg())
    assert load_config(path, ["training.steps=7"]).training.steps == 7
    from spectrum_rl.errors import ConfigError

    with pytest.raises(ConfigError, match="training.steps"):
        load_config(path, ["training.steps=-1"])


def test_yaml_is_loaded_safely(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("domains: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["validate", str(path)]) == 2
    assert "pwned" not in capsys.readouterr().out


def test_summary_json_roundtrip(tmp_path):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    again = Config.model_validate(json.loads(cfg.model_dump_json()))
    assert again == cfg


def test_yaml_reference_is_current():
    from spectrum_rl.config import reference_markdown

    page = (ROOT / "docs" / "reference.md").read_text()
    assert reference_markdown() in page, "docs/reference.md is stale: paste the output of `spectrum-rl schema`"


def test_extends_merges_over_base(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(_cfg(extra="training: {steps: 9, group_size: 4}\n"))
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\ntraining: {steps: 3}\n")
    cfg = load_config(child)
    assert (cfg.training.steps, cfg.training.group_size, cfg.domains[0].name) == (3, 4, "add")
    child.write_text("extends: child.yaml\n")
    assert main(["validate", str(child)]) == 2
    assert "extends: " in capsys.readouterr().err
    child.write_text("extends: missing.yaml\n")
    assert main(["validate", str(child)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_recipes_differ_only_in_the_blend():
    base = load_config(ROOT / "configs" / "quickstart.yaml")
    for name in ("rl_only", "staged", "chord_mu", "chord_phi", "adaptive", "gate"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert cfg.domains == base.domains and cfg.training.steps == base.training.steps
        assert cfg.training.sft != base.training.sft or name == "rl_only"


@pytest.mark.parametrize(
    "training,message",
    [
        ("{loss_type: grpo}", "training.loss_type: 'loss_type' is gone"),
        ("{aggregation: token_mean}", "training.aggregation: 'aggregation' is gone"),
        ("{eps_high: 0.3}", "training.eps_high: 'eps_high' is gone"),
        ("{scale_rewards: batch}", "training.scale_rewards: 'scale_rewards' is gone"),
        ("{loss: gspo}", "GSPO is loss: grpo with importance_sampling_level: sequence"),
        ("{loss: cipso}", "unknown loss 'cipso'; did you mean 'cispo'?"),
        ("{loss: {type: dapo, eps_max: 5}}", "training.loss.eps_max"),
    ],
)
def test_old_and_wrong_loss_fields_are_one_line_errors(tmp_path, training, message):
    from spectrum_rl.errors import ConfigError

    path = tmp_path / "run.yaml"
    path.write_text(_cfg(extra=f"training: {training}\n"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_each_loss_takes_its_own_parameters(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(_cfg(extra="training: {loss: {type: cispo, eps_max: 3}, advantage: none}\n"))
    training = load_config(path).training
    assert (training.loss.type, training.loss.eps_max, training.advantage.type) == ("cispo", 3, "none")
    path.write_text(_cfg(extra="training: {loss: sapo}\n"))
    assert load_config(path).training.loss.temperature_neg == 1.05


def test_an_error_without_a_file_names_only_its_field():
    from spectrum_rl.errors import ConfigError

    assert str(ConfigError("no eval.jsonl", field="RUN_DIR")) == "RUN_DIR: no eval.jsonl"
    assert str(ConfigError("bad", file="a.yaml", field="x", line=3, column=5)) == "a.yaml:3:5: x: bad"
    assert str(ConfigError("bad", file="a.yaml")) == "a.yaml: bad"


def test_analyze_of_a_folder_that_is_no_run_is_one_line_about_the_argument(capsys):
    assert main(["analyze", "no/such/run"]) == 2
    assert capsys.readouterr().err.startswith("error: RUN_DIR: 'no/such/run' has no eval.jsonl")


def test_a_null_answer_is_allowed_where_the_reward_skips_or_zeroes_failures():
    from spectrum_rl.domains import build_domains
    from spectrum_rl.errors import ConfigError

    data = ROOT / "tests" / "bad_inputs" / "data"
    domain = {
        "name": "capitals",
        "kind": "structured",
        "source": {"type": "file", "path": str(data / "null_answer.jsonl")},
        "eval": {"size": 4},
    }

    def config(**reward):
        rewards = [{"type": "exact_match", **reward}]
        return load_config({"model": {"name_or_path": "builtin:tiny"}, "domains": [{**domain, "reward": rewards}]})

    for on_error in ("skip", "zero"):  # the row is left out of the loss, or scores 0, when drawn
        assert build_domains(config(on_error=on_error), ROOT)[0].source.size == 8
    with pytest.raises(ConfigError, match="null in 1 of 12 rows"):
        build_domains(config(), ROOT)


def test_a_relative_model_folder_is_the_config_files_then_the_current_directorys(tmp_path, monkeypatch):
    """As a data file or a reward model is: a config beside its model runs from any directory."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for folder in (project / "model", elsewhere / "cwd_model"):
        folder.mkdir(parents=True)
    path = project / "run.yaml"
    monkeypatch.chdir(elsewhere)
    for name, expected in [
        ("./model", str(project / "model")),  # the config's folder
        ("model", str(project / "model")),
        ("./cwd_model", "./cwd_model"),  # not there: the current directory, as before
        ("org/name", "org/name"),  # a hub id
    ]:
        path.write_text(_cfg(extra=f"model: {{name_or_path: {name}}}\n"))
        assert load_config(path).model.name_or_path == expected, name
    path.write_text(_cfg(extra="model: {name_or_path: ./missing}\n"))
    with pytest.raises(ConfigError, match=r"'./missing' does not exist \(a relative one is looked for next to"):
        load_config(path)


def test_a_reward_type_named_alone_stands_for_the_component_with_its_defaults(tmp_path):
    """As open-r1 lists its reward_funcs: `reward: exact_match`, or names beside full components."""
    path = tmp_path / "run.yaml"
    for reward, types in [
        ("exact_match", ["exact_match"]),
        ("[numeric, {type: format, pattern: 'x', weight: 0.2}]", ["numeric", "format"]),
    ]:
        path.write_text(_cfg(GOOD_TASK.replace("[{type: exact_match}]", reward)))
        assert [c.type for c in load_config(path).domains[0].reward] == types
    path.write_text(_cfg(GOOD_TASK.replace("[{type: exact_match}]", "[exact_mach]")))
    with pytest.raises(ConfigError, match=r"reward\[0\]: unknown reward type 'exact_mach'; did you mean 'exact_match'"):
        load_config(path)
