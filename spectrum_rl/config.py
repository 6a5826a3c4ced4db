"""Run configuration: the YAML schema, its documented defaults, and one-line error messages.

``load_config(path)`` reads YAML with a safe loader, validates it against ``Config`` and checks
cross-field rules (unique domain names, known and acyclic prerequisites). Any problem raises a
``ConfigError`` that names the file, the YAML path of the field (``tasks[2].reward[0].type``),
the line/column when known, what was expected and what was found.
"""
from __future__ import annotations

import copy
import re
import string
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator

from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.rewards.specs import RewardComponentSpec
from spectrum_rl.schema import StrictModel
from spectrum_rl.tasks.specs import SourceSpec
from spectrum_rl.trainer.mu import MuSchedule

# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


class RunConfig(StrictModel):
    """`run:` — naming, output and seeding."""

    name: str = Field("spectrum", min_length=1, description="Run name (used in the output path).")
    output_dir: str = Field("runs/{name}", description="Run directory; `{name}` is replaced by run.name. "
                            "Relative paths are relative to the current working directory.")
    seed: int = Field(0, ge=0, description="Seed for data sampling, rollouts and initialisation.")


class ModelConfig(StrictModel):
    """`model:` — which causal LM to train."""

    name_or_path: str = Field("builtin:tiny", min_length=1,
                              description="`builtin:tiny`, a Hugging Face hub id, or a local folder.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype at load time (`auto` keeps the checkpoint's).")
    chat_template: bool | None = Field(
        None, description="Wrap prompts in the tokenizer's chat template: true, false, or null (auto: "
        "when the tokenizer has one).")


class DomainEvalConfig(StrictModel):
    """`tasks[i].eval:` — the held-out set of a domain."""

    size: int = Field(100, ge=1, description="Number of held-out prompts.")
    split: str | None = Field(None, description="Held-out split: a file path (file source) or split name "
                              "(hub source); null holds out `size` rows from the training data.")


class DomainConfig(StrictModel):
    """`tasks[i]:` — one task domain and its hybrid reward."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Unique domain name.")
    kind: Literal["structured", "creative"] = Field(
        ..., description="structured: one verifiable answer; creative: many valid answers.")
    source: SourceSpec
    prompt: str = Field("{question}\n", description="Prompt template over the row's fields.")
    answer_field: str | None = Field("answer", description="Row field holding the reference answer.")
    expert_field: str | None = Field("expert", description="Row field holding the expert demonstration "
                                     "(SFT target); null when the domain has none.")
    eval: DomainEvalConfig = Field(default_factory=DomainEvalConfig)
    after: list[str] = Field(default_factory=list, description="Prerequisite domain names.")
    reward: list[RewardComponentSpec] = Field(..., min_length=1, description="Weighted reward components.")

    @field_validator("prompt")
    @classmethod
    def _template_parses(cls, v: str) -> str:
        try:
            list(string.Formatter().parse(v))
        except ValueError as exc:
            raise ValueError(f"bad template ({exc}); use {{field}} placeholders and {{{{ }}}} for braces") from exc
        return v


class SchedulerConfig(StrictModel):
    """`scheduler:` — which domains each step trains on (policies in spectrum_rl/scheduler/policies.py)."""

    policy: Literal["joint", "sequential", "bwt", "learnability", "transfer", "adaptive"] = Field(
        "joint", description="joint (fixed weights) | sequential (explicit order) | bwt (order from transfer, "
        "phases) | learnability (SEC/DUMP bandit) | transfer (TAC bandit) | adaptive (ours).")
    weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="`joint`: mixture weight per domain name (normalised); null = uniform.")
    order: list[str] | None = Field(None, description="`sequential`/`bwt`: explicit domain order "
                                    "(`bwt` computes one when null).")
    phase_steps: int = Field(50, ge=1, description="`sequential`/`bwt`: steps per phase (budget).")
    replay: float = Field(0.1, ge=0, lt=1, description="`sequential`/`bwt`: mixture share of earlier domains.")
    plateau_patience: int = Field(2, ge=1, description="`bwt`: evals without improvement before the next phase.")
    plateau_delta: float = Field(0.01, ge=0, description="`bwt`: improvement that resets the plateau count.")
    transfer_file: str | None = Field(None, description="`bwt`: transfer.json from `spectrum-rl order` "
                                      "(relative to the config); null = online estimate or kinds.")
    bandit: Literal["sec", "dump"] = Field("sec", description="`learnability`/`transfer`/`adaptive`: SEC "
                                           "(TD update) or DUMP (UCB).")
    alpha: float = Field(0.5, gt=0, le=1, description="SEC learning rate of Q.")
    tau: float = Field(0.1, gt=0, description="Softmax temperature of the bandits.")
    window: int = Field(20, ge=1, description="Window (steps) of the learnability and entropy signals.")
    min_weight: float = Field(0.02, ge=0, lt=1, description="Bandits: floor on every domain's weight.")
    transfer_weight: float = Field(1.0, ge=0, description="`transfer`/`adaptive`: weight of gradient alignment.")
    alignment_every: int = Field(5, ge=0, description="Compute gradient alignment every N steps "
                                 "(`transfer`/`adaptive`; 0 = never).")
    alignment_dim: int = Field(4096, ge=16, description="Dimension of the gradient sketch.")
    forgetting_margin: float = Field(0.05, ge=0, description="`adaptive`: score drop below best that boosts a domain.")
    forgetting_boost: float = Field(2.0, ge=1, description="`adaptive`: weight multiplier of a forgotten domain.")
    entropy_collapse: float = Field(0.5, gt=0, lt=1, description="Entropy below this fraction of its early "
                                    "baseline counts as collapse.")
    entropy_guard_cut: float = Field(0.5, ge=0, le=1, description="`adaptive`: structured weight multiplier "
                                     "while a creative domain's entropy has collapsed.")
    entropy_guard_mu: float = Field(0.3, ge=0, le=1, description="`adaptive`: minimum mu of a collapsed "
                                    "creative domain.")
    unlock_score: float = Field(0.3, description="`adaptive`: held-out score prerequisites must reach.")

    @field_validator("weights")
    @classmethod
    def _some_positive(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not any(w > 0 for w in v.values()):
                raise ValueError("at least one weight must be > 0")
        return v


class SFTConfig(StrictModel):
    """`training.sft:` — the SFT side of the spectrum and how it is blended with RL."""

    mu: MuSchedule = Field(default_factory=MuSchedule, description="Schedule of the SFT weight mu (all domains).")
    per_domain: dict[str, MuSchedule] = Field(default_factory=dict,
                                              description="Per-domain overrides of `mu` (domain name -> schedule).")
    expert_ratio: float = Field(0.5, ge=0, le=8, description="Expert demonstrations per step, as a fraction of "
                                "prompts_per_step; they only enter the SFT loss.")
    phi: bool = Field(False, description="CHORD-phi: weight each expert token by p(1-p).")
    luffy: bool = Field(False, description="LUFFY: add each prompt's expert completion to its rollout group "
                        "(shaped importance weight pi/(pi+luffy_gamma), no clipping).")
    luffy_gamma: float = Field(0.1, gt=0, description="LUFFY shaping constant gamma.")
    layer_mu: Literal["uniform", "increasing", "decreasing"] = Field(
        "uniform", description="Per-layer mu: the step's mean mu scaled by depth (increasing: 0 at the bottom to "
        "2*mu at the top; decreasing: the reverse; same average), applied to gradients layer by layer.")
    gate_threshold: float = Field(1.0, description="`gate` schedule: a rollout counts as a success when its "
                                  "total reward is >= this.")


class LoraConfig(StrictModel):
    """`training.lora:` — train LoRA adapters instead of all weights (needs `pip install peft`)."""

    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt (peft syntax).")


class TrainingConfig(StrictModel):
    """`training:` — rollouts, loss and optimisation."""

    steps: int = Field(200, ge=1, description="Rollout batches (each followed by num_iterations optimizer steps).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts drawn per step (across domains and processes).")
    group_size: int = Field(8, ge=2, description="Completions per prompt (G) for group-relative advantages.")
    max_new_tokens: int = Field(32, ge=1, description="Rollout length cap.")
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings (EOS always stops).")
    learning_rate: float = Field(1e-6, gt=0, description="AdamW peak learning rate (TRL's default; the "
                                 "built-in tiny model wants ~1e-4).")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Decay after warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warmup (optimizer steps).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    max_nonfinite_steps: int = Field(
        3, ge=1, description="A step whose loss or gradients are NaN/inf is skipped (no update, counted in "
        "`nonfinite_skipped`); this many such steps in a row stop the run with an error.")
    micro_batch_size: int = Field(64, ge=1, description="Most sequences per forward/backward (gradient accumulation).")
    micro_batch_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto", description="Most padded tokens per forward/backward; rows are length-bucketed so short "
        "completions are not padded to the longest (null: no token cap; auto: 1024 on CPU, where it keeps peak "
        "memory low, 16384 on a GPU, where fewer, larger kernels are faster).")
    static_cache: bool | Literal["auto"] = Field(
        "auto", description="Rollouts of Llama-family models (llama, mistral, qwen2; SDPA attention) decode over a "
        "preallocated KV cache: the same samples, 9-18% faster on CPU. false: the model's own cache, for any model; "
        "auto: on CPU only (not yet run on a GPU; true turns it on there).")
    onednn_linear: bool | Literal["auto"] = Field(
        "auto", description="CPU runs: fp32 linear layers (rollouts, training forward and backward, evaluation) on "
        "oneDNN instead of PyTorch's default BLAS, MKL, which runs AVX2 code on AMD CPUs where oneDNN runs AVX-512: "
        "results equal to ~1e-6, 2x the matmul rate on the AMD benchmark machine; rollouts and evaluation hold one "
        "prepacked copy of the weights. auto: on for CPU runs; no effect on a GPU or where this PyTorch build lacks "
        "oneDNN.")
    reuse_host_memory: bool = Field(
        True, description="CPU runs: keep freed memory blocks under 32 MiB in the process heap (glibc mallopt) so "
        "each step reuses the previous step's pages instead of page-faulting them in again (2-5% faster CPU steps); "
        "process-wide, and resident memory stays at its peak. No effect on a GPU or without glibc.")
    num_iterations: int = Field(1, ge=1, description="Optimizer passes per rollout batch (mu in GRPO).")
    aggregation: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = Field(
        "token_mean", description="RL loss aggregation: token_mean (TRL dapo), seq_mean_token_mean (TRL grpo), "
        "seq_mean_token_sum_norm (TRL dr_grpo).")
    eps_low: float = Field(0.2, ge=0, lt=1, description="PPO clip: lower bound 1 - eps_low.")
    eps_high: float = Field(0.28, ge=0, description="PPO clip: upper bound 1 + eps_high (DAPO clip-higher).")
    beta: float = Field(0.0, ge=0, description="KL-to-reference coefficient (0: no reference model is loaded).")
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="Per-token KL estimator for the beta term.")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Std used in advantages.")
    drop_zero_variance: bool = Field(False, description="DAPO dynamic sampling: give groups whose rewards are all "
                                     "equal no weight in the loss.")
    sft: SFTConfig = Field(default_factory=SFTConfig)
    bf16: bool | None = Field(None, description="bf16 autocast: null = on when a CUDA GPU is used.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (GPU runs).")
    lora: LoraConfig | None = Field(None, description="LoRA adapters (null: full fine-tuning).")
    save_every: int = Field(50, ge=0, description="Checkpoint every N steps (0: only the final model).")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")


class EvalConfig(StrictModel):
    """`eval:` — periodic held-out evaluation."""

    every: int = Field(25, ge=1, description="Evaluate every N steps (and at step 0 and the end).")
    max_new_tokens: int = Field(32, ge=1, description="Greedy decoding length cap for evaluation.")
    batch_size: int = Field(128, ge=1, description="Prompts per decoding batch during evaluation.")
    kl_to_base: bool = Field(True, description="Also report KL(policy || base model) on eval prompts "
                             "(keeps a frozen copy of the base weights).")


class LoggingConfig(StrictModel):
    """`logging:` — console and trackers."""

    progress: bool = Field(True, description="Show a progress bar.")
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Experiment trackers through accelerate (off by default).")
    token_classes: dict[str, str] = Field(
        default_factory=lambda: {"planning": r"(?m)^plan:.*$", "execution": r"(?m)^step:.*$"},
        description="Token classes (name -> regex over a completion) whose rollout entropy is logged as "
        "`entropy_class/<name>` (claim C5); the defaults match the built-in worked-steps format.")

    @field_validator("token_classes")
    @classmethod
    def _regexes_compile(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"token class '{name}': bad regex ({exc})") from None
        return v


class Config(StrictModel):
    """A whole run. Every section is optional except `tasks`."""

    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tasks: list[DomainConfig] = Field(..., min_length=1, description="The task domains (at least one).")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def domain_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def output_path(self) -> Path:
        return Path(self.run.output_dir.replace("{name}", self.run.name))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _check_duplicate_keys(node: yaml.Node | None, path: list) -> None:
    """Reject a key given twice in one mapping (PyYAML silently keeps the last), naming its field."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(f"duplicate key '{key}' (first at line {seen[key].start_mark.line + 1})",
                                  field=_format_path([*path, key]), line=key_node.start_mark.line + 1,
                                  column=key_node.start_mark.column + 1)
            seen[key] = key_node
            _check_duplicate_keys(value, [*path, key])
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, [*path, i])


def read_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return (data, composed node tree for locating fields)."""
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise ConfigError("file not found" if not path.exists() else "not a file", file=shown)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", file=shown) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(node, [])
        data = yaml.safe_load(text)  # the safe loader only: no tags that build Python objects
    except ConfigError as exc:
        raise exc.located(file=shown) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"YAML syntax error: {what}", file=shown,
                          line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=shown) from exc
    return data, node


def load_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read, validate and cross-check a run config. Raises ConfigError (one line) on any problem.

    A top-level ``extends: other.yaml`` (relative to this file) loads that config first and
    merges this one over it: mappings merge key by key, everything else (lists included) replaces.
    ``overrides`` maps section -> {field: value} (e.g. from CLI flags) and is validated too.
    """
    shown = str(path)
    data, node = _read_mapping(Path(path), seen=())
    for section, values in (overrides or {}).items():
        data[section] = {**(data.get(section) or {}), **values}
    try:
        config = Config.model_validate(data)
        check_cross_fields(config)
    except ValidationError as exc:
        raise _from_pydantic(exc, data, node, shown) from None
    except ConfigError as exc:
        raise _with_location(exc, node, shown) from None
    return config


def _read_mapping(path: Path, seen: tuple[Path, ...]) -> tuple[dict, yaml.Node | None]:
    """The file's mapping with its ``extends`` chain merged in (base first)."""
    shown = str(path)
    data, node = read_yaml(path)
    if data is None:
        raise ConfigError("the file is empty; a config needs at least a `tasks:` list", file=shown)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of sections at the top level; found {_kind(data)}",
                          file=shown, line=1, column=1)
    base = data.pop("extends", None)
    if base is None:
        return data, node
    line, col = _locate(node, ["extends"])
    if not isinstance(base, str):
        raise ConfigError(f"expected a file path; found {_show(base)}", file=shown, field="extends", line=line, column=col)
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"'{base}' extends itself (cycle)", file=shown, field="extends", line=line, column=col)
    try:
        base_data, _ = _read_mapping(base_path, (*seen, path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"in '{base}': {exc}", file=shown, field="extends", line=line, column=col) from None
    return merge_config(base_data, data), node


def merge_config(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` (a new dict): mappings merge key by key, other values replace."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge_config(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def locate_error(err: ConfigError, path: str | Path) -> ConfigError:
    """Fill in the file, line and column of an error raised after loading (e.g. building domains)."""
    try:
        _, node = read_yaml(path)
    except ConfigError:
        node = None
    return _with_location(err, node, str(path))


def _with_location(err: ConfigError, node: yaml.Node | None, file: str) -> ConfigError:
    line, col = _locate(node, _split_path(err.field)) if err.field else (None, None)
    return err.located(file=file, line=line, column=col)


def check_cross_fields(config: Config) -> None:
    """Rules across fields: unique names, known prerequisites, no cycles, known weight keys."""
    names = config.domain_names
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise ConfigError(f"duplicate domain name '{name}' (also tasks[{first[name]}])",
                              field=f"tasks[{i}].name")
        first[name] = i
    for i, task in enumerate(config.tasks):
        for j, dep in enumerate(task.after):
            if dep == task.name:
                raise ConfigError(f"domain '{dep}' cannot be its own prerequisite", field=f"tasks[{i}].after[{j}]")
            if dep not in first:
                raise ConfigError(f"unknown domain '{dep}'{did_you_mean(dep, names)}; "
                                  f"expected one of {', '.join(names)}", field=f"tasks[{i}].after[{j}]")
    from spectrum_rl.scheduler.graph import find_cycle

    cycle = find_cycle({t.name: t.after for t in config.tasks})
    if cycle:
        raise ConfigError("prerequisite cycle " + " -> ".join(cycle + [cycle[0]]),
                          field=f"tasks[{first[cycle[0]]}].after")
    for key in config.training.sft.per_domain:
        if key not in first:
            raise ConfigError(f"unknown domain '{key}'{did_you_mean(key, names)}",
                              field=f"training.sft.per_domain.{key}")
    for key in (config.scheduler.weights or {}):
        if key not in first:
            raise ConfigError(f"unknown domain '{key}'{did_you_mean(key, names)}", field=f"scheduler.weights.{key}")
    order = config.scheduler.order or []
    for j, name in enumerate(order):
        if name not in first:
            raise ConfigError(f"unknown domain '{name}'{did_you_mean(name, names)}", field=f"scheduler.order[{j}]")
    if order and sorted(order) != sorted(names):
        raise ConfigError(f"must list every domain once; missing or repeated: "
                          f"{', '.join(sorted(set(names) ^ set(order)) or sorted(n for n in order if order.count(n) > 1))}",
                          field="scheduler.order")
    position = {n: i for i, n in enumerate(order)}
    for task in config.tasks if order else []:
        for dep in task.after:
            if position[dep] > position[task.name]:
                raise ConfigError(f"'{task.name}' comes before its prerequisite '{dep}'",
                                  field=f"scheduler.order[{position[task.name]}]")
    _check_model_path(config.model.name_or_path)


def _check_model_path(name: str) -> None:
    """Fail early on a local model path that does not exist (hub ids are checked at load time)."""
    if name.startswith("builtin:"):
        from spectrum_rl.models import BUILTIN_MODELS, BUILTIN_PREFIX

        if name[len(BUILTIN_PREFIX):] not in BUILTIN_MODELS:
            raise ConfigError(f"unknown built-in model '{name}'; expected one of "
                              + ", ".join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS), field="model.name_or_path")
        return
    looks_local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
    if looks_local and not Path(name).expanduser().exists():
        raise ConfigError(f"model folder '{name}' does not exist", field="model.name_or_path")


# ---------------------------------------------------------------------------------------------
# Pydantic errors -> one line
# ---------------------------------------------------------------------------------------------


def _from_pydantic(exc: ValidationError, data: Any, node: yaml.Node | None, file: str) -> ConfigError:
    errors = exc.errors()  # an unknown key first: a misspelt required key also shows up as missing
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = _data_path(err["loc"], data)
    kind, found = err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = path[-1]
        fields = list(_model_fields(path[:-1], data))
        message = f"unknown key '{_key(key)}'{did_you_mean(key, fields)}; valid keys: {', '.join(fields)}"
    elif kind == "missing":
        message = f"missing required key '{path[-1]}'"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = re.findall(r"'([^']+)'", (err.get("ctx") or {}).get("expected_tags", "")) or _union_tags(path, data)
        if kind == "union_tag_not_found" or not isinstance(found, dict) or "type" not in found:
            message = f"missing 'type'; expected one of {', '.join(tags)}"
        else:
            tag = found.get("type")
            message = f"unknown type '{tag}'{did_you_mean(tag, tags)}; expected one of {', '.join(tags)}"
        path = [*path, "type"]
    elif kind == "literal_error":
        options = re.findall(r"'([^']+)'", err["ctx"]["expected"])
        message = f"expected one of {', '.join(options)}; found {_show(found)}{did_you_mean(found, options)}"
    else:
        what = err["msg"]
        what = re.sub(r"^Value error, ", "", what)
        what = re.sub(r"^Input should be ", "expected ", what)
        what = re.sub(r"^(String|List|Dictionary|Value) should ", r"expected \1 to ", what)
        # a union such as int | Literal['auto']: name the literal alternatives too
        words = [o for e in errors if e["type"] == "literal_error" and _data_path(e["loc"], data) == path
                 for o in re.findall(r"'([^']+)'", e["ctx"]["expected"])]
        message = f"{what}{', or ' + ' or '.join(words) if words else ''}; found {_show(found)}"
    line, col = _locate(node, path)
    return ConfigError(message, file=file, field=_format_path(path), line=line, column=col)


def _data_path(loc: tuple, data: Any) -> list:
    """Drop pydantic's union-member tags from ``loc`` by walking the actual input data."""
    out: list = []
    cur = data
    for part in loc:
        if isinstance(cur, (dict, list)) and _has(cur, part):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and part in _model_fields(out, data):
            out.append(part)  # a required key that is missing
            break
    return out


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def _resolve(tp: Any, value: Any) -> Any:
    """Unwrap Annotated/Optional and pick the discriminated-union member matching ``value['type']``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            tag = value.get("type") if isinstance(value, dict) else None
            tp = ([m for m in members if _tag_of(m) == tag] or members)[0]
        else:
            return tp


def _tag_of(model: Any) -> str | None:
    field = getattr(model, "model_fields", {}).get("type")
    args = typing.get_args(field.annotation) if field else ()
    return args[0] if args else None


def _child_type(tp: Any, part: Any) -> Any:
    if hasattr(tp, "model_fields"):
        field = tp.model_fields.get(part)
        return None if field is None else field.annotation
    origin = typing.get_origin(tp)
    if origin is list:
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    return None


def _raw_type(path: list, data: Any) -> tuple[Any, Any]:
    """The (unresolved) schema annotation and the data value at ``path``."""
    tp, cur = Config, data
    for part in path:
        tp = _child_type(_resolve(tp, cur), part)
        cur = cur[part] if _has(cur, part) else None
    return tp, cur


def _model_fields(path: list, data: Any) -> list[str]:
    tp, cur = _raw_type(path, data)
    return list(getattr(_resolve(tp, cur), "model_fields", {}))


def _union_tags(path: list, data: Any) -> list[str]:
    tp, _ = _raw_type(path, data)
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    members = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else ()
    return [t for t in map(_tag_of, members) if t]


def _locate(node: yaml.Node | None, path: list) -> tuple[int | None, int | None]:
    """Line/column (1-based) of the deepest YAML node along ``path``."""
    best = node
    cur = node
    for part in path:
        nxt = None
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if k.value == str(part):
                    nxt = v if part != path[-1] or isinstance(v, (yaml.MappingNode, yaml.SequenceNode)) else k
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int) and part < len(cur.value):
            nxt = cur.value[part]
        if nxt is None:
            break
        best = cur = nxt
    if best is None:
        return None, None
    return best.start_mark.line + 1, best.start_mark.column + 1


def _format_path(path: list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
    return out


def _key(key: Any) -> str:
    """A YAML key as text for a one-line message (control characters escaped)."""
    text = str(key)
    return text if text.isprintable() else repr(text)[1:-1]


def _split_path(field: str) -> list:
    return [int(p) if p.isascii() and p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field)]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number",
            float: "a number", bool: "a boolean", type(None): "nothing"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------
# Reference (README's "YAML reference" is generated from the schema: `spectrum-rl schema`)
# ---------------------------------------------------------------------------------------------

_SECTIONS: list[tuple[str, type[StrictModel]]] = [
    ("run", RunConfig), ("model", ModelConfig), ("tasks[i]", DomainConfig),
    ("tasks[i].eval", DomainEvalConfig), ("scheduler", SchedulerConfig), ("training", TrainingConfig),
    ("training.sft", SFTConfig), ("training.sft.mu", MuSchedule), ("training.lora", LoraConfig),
    ("eval", EvalConfig), ("logging", LoggingConfig),
]
_COMMON_REWARD_FIELDS = ("type", "weight", "name", "on_error")
_SUBSECTIONS = {DomainConfig: ("source", "reward", "eval"), TrainingConfig: ("sft", "lora"), SFTConfig: ("mu",)}


def reference_markdown() -> str:
    """Markdown tables of every config field with its default and description."""
    from spectrum_rl.rewards.base import RewardSpec

    parts = []
    for prefix, model in _SECTIONS:
        parts.append(_field_table(f"`{prefix}`", model, prefix + ".", skip=_SUBSECTIONS.get(model, ())))
    parts.append(_field_table("Every reward component (`tasks[i].reward[j]`)", RewardSpec, "", skip=()))
    for title, union, skip in (("Source", SourceSpec, ("type",)), ("Reward", RewardComponentSpec, _COMMON_REWARD_FIELDS)):
        for member in typing.get_args(typing.get_args(union)[0]):
            tag = member.model_fields["type"].default
            doc = " ".join((member.__doc__ or "").strip().split("\n\n")[0].split())
            parts.append(_field_table(f"{title} `type: {tag}` — {doc}", member, "", skip=skip))
    return "\n\n".join(parts) + "\n"


def _field_table(title: str, model: type[StrictModel], prefix: str, skip: tuple[str, ...]) -> str:
    from pydantic_core import PydanticUndefined

    lines = [f"#### {title}", "", "| field | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        if field.default_factory is not None:
            value = field.default_factory()
            default = "(section)" if isinstance(value, StrictModel) else f"`{value!r}`"
        elif field.default is PydanticUndefined:
            default = "**required**"
        else:
            default = f"`{field.default!r}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{prefix}{name}` | {default} | {description} |")
    return "\n".join(lines)
