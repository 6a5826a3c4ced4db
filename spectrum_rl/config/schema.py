"""The YAML schema of a run: one class per section, each field with its documented default.

Sections read only by a lower layer are defined there and assembled here: `scheduler:`
(scheduler/policies.py), `training.sft:` (scheduler/blend.py), `domains[i].source` (sources/specs.py)
and `domains[i].reward[j]` (rewards/specs.py).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from spectrum_rl.objectives.advantages import ADVANTAGES, AdvantageParams
from spectrum_rl.objectives.losses import LOSSES, LossParams
from spectrum_rl.registry import Registered, refuse, renamed
from spectrum_rl.rewards.specs import RewardComponentSpec
from spectrum_rl.scheduler.blend import SFTConfig
from spectrum_rl.scheduler.policies import SchedulerConfig
from spectrum_rl.schema import StrictModel
from spectrum_rl.sources.specs import AnySourceSpec

AUTO_EXPERT = "auto"  # expert_field default: the `expert` field when the rows have one, else none


class RunConfig(StrictModel):
    """`run:` — naming, output and seeding."""

    name: str = Field("spectrum", min_length=1, description="Run name (used in the output path).")
    output_dir: str = Field(
        "runs/{name}",
        description="Run directory; `{name}` is replaced by run.name. "
        "Relative paths are relative to the current working directory.",
    )
    seed: int = Field(0, ge=0, description="Seed for data sampling, rollouts and initialisation.")


class ModelConfig(StrictModel):
    """`model:` — which causal LM to train."""

    name_or_path: str = Field(
        "builtin:tiny",
        min_length=1,
        description="`builtin:tiny`, a Hugging Face hub id, or a local folder (a relative one is looked for next "
        "to the config file, then in the current directory). A PEFT adapter folder (a LoRA SFT run's) loads as "
        "its base model with the adapter merged in.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype at load time (`auto` keeps the checkpoint's)."
    )
    chat_template: bool | None = Field(
        None,
        description="Wrap prompts in the tokenizer's chat template: true, false, or null (auto: "
        "when the tokenizer has one).",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra variables for the chat template, as TRL's `chat_template_kwargs`, e.g. "
        "{enable_thinking: false} for Qwen3.",
    )


class DomainEvalConfig(StrictModel):
    """`domains[i].eval:` — the held-out set of a domain."""

    size: int = Field(
        100, ge=1, description="Number of held-out prompts; from a larger `split`, a seeded sample of this many."
    )
    split: str | None = Field(
        None,
        description="Held-out split: a file path (file source) or split name "
        "(hub source); training rows whose question is in it are dropped; null holds out `size` rows "
        "from the training data.",
    )


class DomainConfig(StrictModel):
    """`domains[i]:` — one task domain and its hybrid reward."""

    name: str = Field(..., description="Unique domain name: letters, digits, `_`, `.` and `-`.")
    kind: Literal["structured", "creative"] = Field(
        ..., description="structured: one verifiable answer; creative: many valid answers."
    )
    source: AnySourceSpec
    prompt: str = Field("{question}\n", description="Prompt template over the row's fields.")
    system_prompt: str | None = Field(
        None,
        description="System message before each prompt, a template over the row's fields like `prompt` (needs "
        "the model's chat template; a column: `{system}`); null: a conversational prompt's own system message, if "
        "any, else none.",
    )
    answer_field: str | None = Field("answer", description="Row field holding the reference answer.")
    expert_field: str | None = Field(
        AUTO_EXPERT,
        description="Row field holding the expert demonstration "
        "(SFT target); auto: `expert` when the rows have it, else none; null: none. "
        "A domain whose mu schedule trains on demonstrations must have them.",
    )
    eval: DomainEvalConfig = Field(default_factory=DomainEvalConfig)
    after: list[str] = Field(default_factory=list, description="Prerequisite domain names.")
    sampling: Literal["uniform", "pass_rate"] = Field(
        "uniform",
        description="How training prompts are drawn: uniform (at random from the source), or pass_rate (a finite "
        "pool only: file, hub, reasoning_gym; each prompt weighted by its learnability p(1-p) from a tracked pass "
        "rate, solved and hopeless prompts retired and revisited now and then; `scheduler.prompt_sampling`).",
    )
    reward: list[RewardComponentSpec] = Field(
        ...,
        min_length=1,
        description="Weighted reward components; a type's name alone stands for `{type: NAME}` with its "
        "defaults (`reward: exact_match`, `reward: [exact_match, {type: format, weight: 0.2}]`).",
    )

    @field_validator("reward", mode="before")
    @classmethod
    def _names_stand_for_components(cls, v: Any) -> Any:
        """A component named by its type alone, as open-r1 lists its `reward_funcs`."""
        items = [v] if isinstance(v, str) else v
        return [{"type": c} if isinstance(c, str) else c for c in items] if isinstance(items, list) else v

    @field_validator("name")
    @classmethod
    def _name_fits_keys_and_folders(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", v).strip("_")
            said = f", e.g. {fixed}" if v.isascii() and fixed else ""
            raise ValueError(f"a domain name is ASCII letters, digits, _, . and - only (it names metric keys){said}")
        return v

    @field_validator("prompt", "system_prompt")
    @classmethod
    def _template_parses(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            list(string.Formatter().parse(v))
        except ValueError as exc:
            raise ValueError(f"bad template ({exc}); use {{field}} placeholders and {{{{ }}}} for braces") from exc
        return v


class LoraConfig(StrictModel):
    """`training.lora:` — train LoRA adapters instead of all weights (needs `pip install peft`)."""

    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt (peft syntax).")


LossField = Annotated[LossParams, Registered(LOSSES, shorthand=True)]
AdvantageField = Annotated[AdvantageParams, Registered(ADVANTAGES, shorthand=True)]
_MOVED = {  # training keys of the flat layout -> how they are written now
    "loss_type": "write loss: NAME (or loss: {type: NAME, ...its parameters})",
    "aggregation": "write loss: dapo (token_mean), grpo (seq_mean_token_mean) or dr_grpo (seq_mean_token_sum_norm)",
    "eps_low": "write loss: {type: NAME, eps_low: ...}",
    "eps_high": "write loss: {type: NAME, eps_high: ...}",
    "cispo_eps_max": "write loss: {type: cispo, eps_max: ...}",
    "sapo_temperature_pos": "write loss: {type: sapo, temperature_pos: ...}",
    "sapo_temperature_neg": "write loss: {type: sapo, temperature_neg: ...}",
    "scale_rewards": "write advantage: NAME",
}


class TrainingConfig(StrictModel):
    """`training:` — rollouts, loss and optimisation."""

    steps: int = Field(200, ge=1, description="Rollout batches (each followed by num_iterations optimizer steps).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts drawn per step (across domains and processes).")
    group_size: int = Field(8, ge=2, description="Completions per prompt (G) for group-relative advantages.")
    max_new_tokens: int = Field(32, ge=1, description="Rollout length cap.")
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling.")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings (EOS always stops).")
    learning_rate: float = Field(
        1e-6, gt=0, description="AdamW peak learning rate (TRL's default; the built-in tiny model wants ~1e-4)."
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Decay after warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warmup (optimizer steps).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    max_nonfinite_steps: int = Field(
        3,
        ge=1,
        description="A step whose loss or gradients are NaN/inf is skipped (no update, counted in "
        "`nonfinite_skipped`); this many such steps in a row stop the run with an error.",
    )
    micro_batch_size: int = Field(64, ge=1, description="Most sequences per forward/backward (gradient accumulation).")
    micro_batch_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto",
        description="Most padded tokens per forward/backward, counted as the forward processes them (each "
        "distinct prompt once, plus every completion); rows are length-bucketed so short completions are not "
        "padded to the longest (null: no token cap; auto: 1024 on CPU, where it keeps peak memory low; on a GPU, "
        "the tokens whose activations, kept whole, fit in `memory_fraction` of the free memory on the first step, "
        "from an estimate of the activation bytes per token, trainer/memory.py; the same with or without "
        "checkpointing, so that checkpointing lowers the peak). A CUDA out-of-memory in a training micro-batch "
        "halves both caps and redoes the step (logged as `oom_retries`; one process only).",
    )
    memory_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="On a GPU, the share of the free memory (at the first step, after the model and AdamW's "
        "state) that `micro_batch_tokens: auto` plans training activations for: lower it to cap the peak.",
    )
    static_cache: bool | Literal["auto"] = Field(
        "auto",
        description="Rollouts of Llama-family models (llama, mistral, qwen2; SDPA attention) decode over a "
        "preallocated KV cache: the same samples, faster (docs/performance.md). false: the model's own cache, for any "
        "model; "
        "auto: on CPU only (not yet run on a GPU; true turns it on there).",
    )
    decode_graphs: bool | Literal["auto"] = Field(
        "auto",
        description="With the static-cache decoder: fixed-shape decode steps (rows padded to a multiple of 16, "
        "cache length to a multiple of 64), captured once per shape in a CUDA graph on a GPU and replayed every "
        "token; the capture time is logged once as `time/graph_capture`. auto: on CUDA. On CPU true runs the "
        "same fixed-shape step eagerly (no gain there).",
    )
    onednn_linear: bool | Literal["auto"] = Field(
        "auto",
        description="CPU runs: fp32 linear layers (rollouts, training forward and backward, evaluation) on "
        "oneDNN instead of PyTorch's default BLAS, MKL, which runs AVX2 code on AMD CPUs where oneDNN runs AVX-512: "
        "results equal to float rounding, a faster matmul on AMD CPUs (docs/performance.md); rollouts and "
        "evaluation hold one prepacked copy of the weights. auto: on for CPU runs; no effect on a GPU or where this "
        "PyTorch build lacks oneDNN.",
    )
    reuse_host_memory: bool = Field(
        True,
        description="CPU runs: keep freed memory blocks under 32 MiB in the process heap (glibc mallopt) so "
        "each step reuses the previous step's pages instead of page-faulting them in again (docs/performance.md); "
        "process-wide (set by the `train` and `study` commands, not by building a Trainer), and resident memory "
        "stays at its peak. No effect on a GPU or without glibc.",
    )
    num_iterations: int = Field(
        1,
        ge=1,
        description="Optimizer passes over each rollout batch (PPO epochs: after the first the importance ratio "
        "is off-policy).",
    )
    loss: LossField = Field(
        default_factory=lambda: LOSSES.get("dapo").Params(type="dapo"),
        description="The RL loss: `{type: NAME, ...its parameters}` or a bare NAME; TRL's GRPOConfig.loss_type "
        "family (each loss and its parameters: below; formulas: spectrum_rl/objectives/losses.py).",
    )
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token",
        description="Importance ratio per token, or one per sequence from the mean log-ratio of its tokens (GSPO, "
        "with loss grpo).",
    )
    beta: float = Field(0.0, ge=0, description="KL-to-reference coefficient (0: no reference model is loaded).")
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="Per-token KL estimator for the beta term.")
    advantage: AdvantageField = Field(
        default_factory=lambda: ADVANTAGES.get("group").Params(type="group"),
        description="How centred group rewards become advantages: `{type: NAME}` or a bare NAME (group: divided by "
        "the group's std, GRPO; batch: by one std over the batch; none: not divided, Dr. GRPO; or any registered).",
    )
    drop_zero_variance: bool = Field(
        False, description="DAPO dynamic sampling: give groups whose rewards are all equal no weight in the loss."
    )
    dynamic_sampling: int = Field(
        0,
        ge=0,
        description="DAPO dynamic sampling: up to this many extra rounds per step in which every rollout group whose "
        "rewards were all equal (no learning signal) is replaced by a fresh prompt of its domain, rolled out and "
        "scored (0: off). Logged as `dynamic_sampling/resampled` (prompts drawn again) and "
        "`dynamic_sampling/zero_std_left` (groups still without signal after the last round).",
    )
    max_rollouts: int | None = Field(
        None,
        ge=1,
        description="A compute budget: stop after the step at which this many completions have been generated "
        "(all processes; every completion sampled, those dynamic sampling replaces included; `steps` stays the "
        "cap). Logged as `rollouts/generated` (per step) and `rollouts/total`; eval.jsonl records `rollouts`.",
    )
    sft: SFTConfig = Field(default_factory=SFTConfig)
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="bf16 autocast for rollouts, training and evaluation (weights, gradients and AdamW state stay "
        "fp32; log-probabilities and the loss are reduced in fp32). auto: on for a CUDA GPU and for a CPU with bf16 "
        "matmul units (AMX, AVX512-BF16 or Arm BF16 in its flags; where the flags cannot be read, when a bf16 "
        "matmul measured at start-up runs at least 1.3x fp32), fp32 elsewhere; `train` prints which and why.",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Activation checkpointing: each decoder layer keeps only its input for the backward and is "
        "recomputed there (less memory, one more forward per layer). Llama-family models keep the "
        "shared-prompt forward under it (trainer/shared_prefix.py); others then forward every row's prompt. "
        "auto: on for CUDA, as TRL's GRPOConfig does by default; off on CPU, where memory is not the limit.",
    )
    sharding: Literal["auto", "none", "fsdp"] = Field(
        "auto",
        description="fsdp: parameters, gradients and AdamW state split over the processes (PyTorch FSDP2, one unit "
        "per decoder layer plus the root; each process holds 1/world of them); rollouts and evaluation gather the "
        "whole policy on every process for their duration. Checkpoints hold each process's shards (PyTorch "
        "distributed checkpointing); final/ is the whole model. Not with LoRA or gradient alignment. auto: fsdp when "
        "launched with an accelerate FSDP config (`accelerate launch --use_fsdp`), else none (each process a whole "
        "copy; several processes: DDP).",
    )
    lora: LoraConfig | None = Field(None, description="LoRA adapters (null: full fine-tuning).")
    save_every: int = Field(50, ge=0, description="Checkpoint every N steps (0: only the final model).")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        for old, now in _MOVED.items():
            renamed(data, old, now)
        loss = data.get("loss") if isinstance(data, dict) else None
        if "gspo" in (loss, loss.get("type") if isinstance(loss, dict) else None):
            # TRL has no such loss type either: GSPO is a ratio level
            refuse("loss", "GSPO is loss: grpo with importance_sampling_level: sequence", loss)
        return data


class EvalConfig(StrictModel):
    """`eval:` — periodic held-out evaluation."""

    every: int = Field(25, ge=1, description="Evaluate every N steps (and at step 0 and the end).")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="Greedy decoding length cap for evaluation; null: `training.max_new_tokens` (a lower cap cuts "
        "off held-out answers the policy was trained to write).",
    )
    batch_size: int = Field(128, ge=1, description="Prompts per decoding batch during evaluation.")
    kl_to_base: bool = Field(
        True,
        description="Also report KL(policy || base model) on eval prompts (keeps a frozen copy of the base weights).",
    )
    log_completions: int = Field(
        3,
        ge=0,
        description="Held-out prompts per domain whose greedy completion is written to completions.jsonl at each "
        "evaluation (the prompt as the model sees it, the completion, the reference answer, score and reward): "
        "what the reward is parsing; 0: none.",
    )


class LoggingConfig(StrictModel):
    """`logging:` — console and trackers."""

    progress: bool = Field(True, description="Show a progress bar.")
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Experiment trackers through accelerate (off by default)."
    )
    token_classes: dict[str, str] = Field(
        default_factory=lambda: {"planning": r"(?m)^plan:.*$", "execution": r"(?m)^step:.*$"},
        description="Token classes (name -> regex over a completion) whose rollout entropy is logged as "
        "`entropy_class/<name>` (claim C5); the defaults match completions that write `plan:` and `step:` lines "
        "(the built-in world's demonstrations do not).",
    )

    @field_validator("token_classes")
    @classmethod
    def _regexes_compile(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"token class '{name}': bad regex ({exc})") from None
        return v


class StudyConfig(StrictModel):
    """`study:` — what `spectrum-rl study CONFIG` runs for this config (every field: null = the study's
    default; command-line options win)."""

    arms: list[str] | None = Field(
        None, description="Arms to run: built-in arm names (docs/study.md) or names defined in `custom_arms`."
    )
    custom_arms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Arm name -> config overlay (e.g. `{scheduler: {policy: sec}}`), applied on the study's base "
        "config with RL only (mu rl_only) unless the overlay sets `training.sft`.",
    )
    seeds: int | None = Field(None, ge=1, description="Seeds per arm.")
    first_seed: int | None = Field(
        None,
        ge=0,
        description="Run seed of each arm's first run; the others count up from it. A confirmatory study sets it "
        "past an earlier study's seeds, so its runs (and eval sets, drawn per seed) are fresh. null: 0.",
    )
    claim_seeds: int | None = Field(None, ge=1, description="Seeds of the deciding arms (`claim_arms`).")
    claim_arms: list[str] | None = Field(
        None, description="The arms a comparison decides on (they get `claim_seeds`); null = the claims' arms."
    )
    steps: int | None = Field(None, ge=1, description="Training steps of every run (with `max_rollouts`: the cap).")
    max_rollouts: int | None = Field(
        None,
        ge=1,
        description="The budget of every run in completions generated (`training.max_rollouts`): arms are "
        "compared at equal compute, curves are read against rollouts, and each arm's rollouts to reach joint's "
        "final score are reported. null: the budget is `steps`.",
    )
    primary: str | None = Field(
        None,
        description="The one pre-registered comparison `a - b` (e.g. `adaptive - joint`), tested alone at alpha "
        "0.05 by the exact sign-flip test; both arms need at least 8 seeds. Every other comparison is secondary "
        "(Holm over its family).",
    )
    room_oracle: str | None = Field(
        None,
        description="The custom arm that measures the room for a curriculum (gate G6 of `spectrum-rl gates`, and the "
        "study's void check): an oracle set by someone who knows the world, e.g. `oracle_static` with weights off "
        "the dead slices, or `oracle_ladder` climbing a ladder whose rungs teach in order. null: `oracle_static`.",
    )
    prompts_per_step: int | None = Field(None, ge=1, description="Rollout prompts per step.")
    group_size: int | None = Field(None, ge=2, description="Rollouts per prompt.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation cap (rollouts and eval); null: `training.max_new_tokens`."
    )
    eval_every: int | None = Field(None, ge=1, description="Steps between evaluations.")
    eval_size: int | None = Field(None, ge=1, description="Held-out prompts per domain (cap).")
    probe_steps: int | None = Field(None, ge=1, description="Steps of each domain's transfer probe.")
    plasticity_steps: int | None = Field(None, ge=1, description="Steps of the plasticity probe.")

    @field_validator("primary")
    @classmethod
    def _primary_names_two_arms(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\w+ - \w+", v):
            raise ValueError("the comparison is two arms with ' - ' between them, e.g. 'adaptive - joint'")
        return v

    @field_validator("room_oracle")
    @classmethod
    def _room_oracle_is_defined(cls, v: str | None, info: ValidationInfo) -> str | None:
        defined = info.data.get("custom_arms") or {}
        if v is not None and v not in defined:
            raise ValueError(f"'{v}' is not an arm of study.custom_arms (defined: {', '.join(defined) or 'none'})")
        return v


class Config(StrictModel):
    """A whole run. Every section is optional except `domains`."""

    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    domains: list[DomainConfig] = Field(..., min_length=1, description="The domains (at least one).")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        renamed(data, "tasks", "write domains:")
        return data

    @property
    def domain_names(self) -> list[str]:
        return [t.name for t in self.domains]

    @property
    def kinds(self) -> dict[str, str]:
        """Domain -> structured | creative, in config order."""
        return {t.name: t.kind for t in self.domains}

    @property
    def prerequisites(self) -> dict[str, list[str]]:
        """Domain -> the domains it comes after."""
        return {t.name: list(t.after) for t in self.domains}

    @property
    def output_path(self) -> Path:
        return Path(self.run.output_dir.replace("{name}", self.run.name))
