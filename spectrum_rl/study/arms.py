"""The study's arms and budget: does continuous SFT<->RL beat SFT-then-RL? Every arm is a config
overlay on the same base config, domains, budget of steps and samples; each runs with several seeds.

Recipe arms (joint mixture): rl_only, sft_only, staged, chord_mu, chord_phi, adaptive_mu, gate,
layer_mu (per-layer mu, ours). Ordering arms (RL only): joint (= rl_only), structured_first,
creative_first, bwt, transfer, adaptive. The adaptive spectrum: spectrum (the adaptive policy
with per-domain adaptive mu, SFT routed where RL is blind), compared with joint, staged and
chord_mu by paired differences. One domain (``plasticity_domain``) is held out of training and
used afterwards to probe plasticity (a config of one domain has none to spare: no probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from spectrum_rl.config import Config, merge_config
from spectrum_rl.config.schema import StudyConfig
from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.scheduler.graph import prerequisite_graph

RECIPE_ARMS = ["rl_only", "sft_only", "staged", "chord_mu", "chord_phi", "adaptive_mu", "gate", "layer_mu"]
ORDER_ARMS = ["joint", "structured_first", "creative_first", "bwt", "transfer", "adaptive"]
# sequential phases in a fixed order: by kind, or the recommended order and its reverse
PHASED_ARMS = ["structured_first", "creative_first", "order", "order_reverse"]
# a scheduler policy of that name (registry), RL only
POLICY_ARMS = ["joint", "bwt", "sec", "dump", "thompson", "target_pass", "learnability", "transfer", "adaptive"]
BUILTIN_ARMS = RECIPE_ARMS + ["spectrum"] + PHASED_ARMS + POLICY_ARMS  # what `arm_overlay` builds by name
# the arms a claim or the key ablation compares: they get ``claim_seeds``
CLAIM_ARMS = [
    "rl_only",
    "staged",
    "chord_mu",
    "chord_phi",
    "adaptive_mu",
    "gate",
    "sft_only",
    "structured_first",
    "spectrum",
]
SPECTRUM_VS = ["joint", "staged", "chord_mu", "adaptive_mu"]  # the arms `spectrum` is compared with
# the published and oracle curricula `adaptive` must beat: compared with it pair by pair
BASELINE_ARMS = [
    "sec",
    "dump",
    "thompson",
    "target_pass",
    "oracle_static",
    "oracle_ladder",
    "learnability",
    "transfer",
    "bwt",
]


@dataclass
class StudySpec:
    """Grid and budget. ``quick`` is a reduced grid for tests and a first look: a smoke run whose
    verdicts are not evidence. ``seeds`` per arm; the arms a claim compares get ``claim_seeds``."""

    arms: list[str] = field(default_factory=lambda: RECIPE_ARMS + ORDER_ARMS + ["spectrum"])
    seeds: int = 3
    claim_seeds: int = 6
    first_seed: int = 0  # run seed of each arm's first run
    smoke: bool = False  # the quick grid: says so beside every verdict
    steps: int = 90
    max_rollouts: int | None = None  # the compute budget per run (completions generated); None: steps
    primary: str | None = None  # the pre-registered comparison "a - b"
    room_oracle: str = "oracle_static"  # the custom arm gate G6 measures the room with
    prompts_per_step: int = 8
    group_size: int = 6
    max_new_tokens: int | None = None  # None: the config's training.max_new_tokens (the task's answer length)
    eval_every: int = 15
    eval_size: int = 50
    plasticity_steps: int = 16
    probe_steps: int = 4
    workers: int = 1  # runs in parallel, each in its own process with its share of the cores
    custom_arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> config overlay
    claim_arms: list[str] | None = None  # the arms that get claim_seeds (None: CLAIM_ARMS)

    def seeds_of(self, arm: str) -> int:
        """Seeds run for ``arm``."""
        return self.claim_seeds if arm in (CLAIM_ARMS if self.claim_arms is None else self.claim_arms) else self.seeds

    def with_config(self, study: StudyConfig) -> StudySpec:
        """This spec with the fields a config's ``study:`` section sets (its non-null fields)."""
        given = {k: v for k, v in study.model_dump().items() if v not in (None, {})}
        if "eval_every" not in given and "steps" in given:
            given["eval_every"] = max(1, given["steps"] // 6)
        return replace(self, **given)

    @classmethod
    def quick(cls) -> StudySpec:
        """The reduced grid of ``spectrum-rl study --quick``."""
        return cls(
            arms=["rl_only", "joint", "sft_only", "staged", "chord_mu", "structured_first"],
            seeds=2,
            claim_seeds=2,
            smoke=True,
            steps=24,
            eval_every=8,
            eval_size=30,
            plasticity_steps=8,
            probe_steps=2,
        )


def default_plasticity_domain(config: Config) -> str | None:
    """The last structured domain that no other domain depends on (else the last domain); None for
    a config of one domain, which has none to spare (the study then has no plasticity probe)."""
    if len(config.domains) == 1:
        return None
    needed = {p for t in config.domains for p in t.after}
    free = [t.name for t in config.domains if t.name not in needed]
    structured = [t.name for t in config.domains if t.kind == "structured" and t.name in free]
    return (structured or free or config.domain_names)[-1]


def kind_order(config: Config, domains: list[str], first: str) -> list[str]:
    """Topological order of ``domains`` that puts ``first``-kind domains as early as prerequisites allow."""
    kinds = {t.name: t.kind for t in config.domains}
    after = {t.name: [p for p in t.after if p in domains] for t in config.domains if t.name in domains}
    rank = {n: (kinds[n] != first, domains.index(n)) for n in domains}
    return list(nx.lexicographical_topological_sort(prerequisite_graph(after), key=lambda n: rank[n]))


def arm_overlay(
    arm: str,
    spec: StudySpec,
    config: Config,
    domains: list[str],
    transfer_file: str | None,
    order: list[str] | None = None,
) -> dict:
    """The config changes that define ``arm`` (on top of the study's base): a custom arm's overlay
    (RL only unless it sets ``training.sft``), else the built-in arm's. ``order``: the recommended
    order (the ``order`` arm trains it in equal phases)."""
    if arm in spec.custom_arms:
        return merge_config({"training": {"sft": {"mu": {"type": "rl_only"}}}}, spec.custom_arms[arm])
    steps = spec.steps
    mu = {
        "rl_only": {"type": "rl_only"},
        "sft_only": {"type": "sft_only"},
        # SFT long enough for the demonstrations to be absorbed (the built-in world's new domain
        # levels off after ~60 SFT steps, docs/world.md), then RL.
        "staged": {"type": "staged", "sft_steps": 2 * steps // 3},
        "chord_mu": {"type": "cosine", "peak": 0.9, "valley": 0.05, "warmup": 0, "decay_steps": steps},
        "chord_phi": {"type": "constant", "value": 0.1},
        "adaptive_mu": {"type": "adaptive"},
        "gate": {"type": "gate", "gamma": 0.0},
        "layer_mu": {"type": "cosine", "peak": 0.9, "valley": 0.05, "warmup": 0, "decay_steps": steps},
    }
    if arm in mu:
        sft = {"mu": mu[arm], "phi": arm == "chord_phi", "layer_mu": "increasing" if arm == "layer_mu" else "uniform"}
        return {"training": {"sft": sft}, "scheduler": {"policy": "joint"}}
    if arm == "spectrum":  # backward transfer from the study's probe until the online fit exists
        scheduler = {"policy": "adaptive", "transfer_file": transfer_file, "difficulty": {"mode": "frontier"}}
        return {"training": {"sft": {"mu": {"type": "adaptive"}}}, "scheduler": scheduler}
    phase = max(1, steps // len(domains))
    orders = {
        "structured_first": kind_order(config, domains, "structured"),
        "creative_first": kind_order(config, domains, "creative"),
        "order": order or domains,
        "order_reverse": list(reversed(order or domains)),  # the prediction's other test
    }
    if arm not in BUILTIN_ARMS:
        raise ConfigError(f"unknown arm '{arm}'{did_you_mean(arm, BUILTIN_ARMS)}", field="study.arms")
    policy = {
        **{name: {"type": "sequential", "order": o, "phase_steps": phase} for name, o in orders.items()},
        **{name: name for name in POLICY_ARMS},
        "bwt": {"type": "bwt", "phase_steps": phase},
    }[arm]
    scheduler: dict = {"policy": policy}
    if arm in ("bwt", "adaptive"):  # backward transfer from the study's probe until the online fit exists
        scheduler["transfer_file"] = transfer_file
    if arm == "adaptive":
        scheduler["difficulty"] = {"mode": "frontier"}
    return {"training": {"sft": {"mu": {"type": "rl_only"}}}, "scheduler": scheduler}


def own_runs(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``runs`` with each run once: ``joint`` dropped where it is ``rl_only``'s runs under another
    name (a study that runs both trains them once), kept where it ran on its own."""
    return {arm: seeds for arm, seeds in runs.items() if arm != "joint" or "rl_only" not in runs}


def with_joint(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``runs`` with ``joint`` as ``rl_only``'s runs where it did not run on its own (`own_runs` undone)."""
    return runs if "joint" in runs or "rl_only" not in runs else {**runs, "joint": runs["rl_only"]}


def check_arms(arms: list[str], custom_arms: dict[str, Any]) -> None:
    """Every arm is built in (`BUILTIN_ARMS`) or defined in ``custom_arms``; else a ConfigError at
    ``study.arms[i]`` naming the valid arms."""
    for i, arm in enumerate(arms):
        if arm not in BUILTIN_ARMS and arm not in custom_arms:
            known = BUILTIN_ARMS + list(custom_arms)
            raise ConfigError(
                f"unknown arm '{arm}'{did_you_mean(arm, known)}; built-in arms: {', '.join(BUILTIN_ARMS)} "
                "(docs/study.md; SFT then RL is 'staged'), or define it under study.custom_arms",
                field=f"study.arms[{i}]",
            )


def study_base(config: Config, spec: StudySpec, probe_domain: str | None) -> dict:
    """The base config of every arm: the study budget, ``probe_domain`` left out (None keeps every
    domain: the plasticity probe's config, so it trains at the study's batch and eval size)."""
    data = config.model_dump(mode="json")
    data["domains"] = [t for t in data["domains"] if t["name"] != probe_domain]
    for t in data["domains"]:
        t["after"] = [p for p in t["after"] if p != probe_domain]
        t["eval"]["size"] = min(t["eval"]["size"], spec.eval_size)
    # plain: uniform mixture and levels (each arm sets its own); thresholds and sampler settings stay
    data["scheduler"] |= {"policy": "joint", "difficulty": {**data["scheduler"]["difficulty"], "mode": "uniform"}}
    cap = spec.max_new_tokens or config.training.max_new_tokens
    data["training"].update(
        steps=spec.steps,
        prompts_per_step=spec.prompts_per_step,
        group_size=spec.group_size,
        max_new_tokens=cap,
        max_rollouts=spec.max_rollouts,
        save_every=0,
    )
    data["eval"].update(every=spec.eval_every, max_new_tokens=cap)
    data["logging"].update(progress=False, trackers=[])
    return data
