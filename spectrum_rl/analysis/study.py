"""The study: does continuous SFT<->RL beat SFT-then-RL? Every arm is a config overlay on the
same base config, domains, budget of steps and samples; each runs with several seeds.

Recipe arms (joint mixture): rl_only, sft_only, staged, chord_mu, chord_phi, adaptive_mu, gate,
layer_mu (per-layer mu, ours). Ordering arms (RL only): joint (= rl_only), structured_first,
creative_first, bwt, transfer, adaptive. The adaptive spectrum: spectrum (the adaptive policy
with per-domain adaptive mu, SFT routed where RL is blind), compared with joint, staged and
chord_mu by paired differences. One domain (``plasticity_domain``) is held out of training and
used afterwards to probe plasticity. Outputs: ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from spectrum_rl.analysis.claims import judge_claims
from spectrum_rl.analysis.phases import detect_all
from spectrum_rl.analysis.probe import probe_transfer, recommend_order
from spectrum_rl.analysis.report import claims_markdown, write_report
from spectrum_rl.analysis.runs import plasticity_probe, run_summary
from spectrum_rl.analysis.sparsity import changed_masks, final_state, mask_overlap, model_state, update_sparsity
from spectrum_rl.analysis.stats import PAIRED_METHOD, holm, paired_diff, paired_p, t_interval
from spectrum_rl.config import Config, Override, load_config, merge_config
from spectrum_rl.domains import build_domains
from spectrum_rl.errors import SpectrumError
from spectrum_rl.scheduler.graph import prerequisite_graph
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.trainer.loop import Trainer

RECIPE_ARMS = ["rl_only", "sft_only", "staged", "chord_mu", "chord_phi", "adaptive_mu", "gate", "layer_mu"]
ORDER_ARMS = ["joint", "structured_first", "creative_first", "bwt", "transfer", "adaptive"]
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
# the published and oracle curricula `adaptive` must beat (issue 25): compared with it pair by pair
BASELINE_ARMS = ["sec", "dump", "thompson", "oracle_static", "oracle_ladder", "learnability", "transfer", "bwt"]


@dataclass
class StudySpec:
    """Grid and budget. ``quick`` is a reduced grid for tests and a first look: a smoke run whose
    verdicts are not evidence. ``seeds`` per arm; the arms a claim compares get ``claim_seeds``."""

    arms: list[str] = field(default_factory=lambda: RECIPE_ARMS + ORDER_ARMS + ["spectrum"])
    seeds: int = 3
    claim_seeds: int = 6
    smoke: bool = False  # the quick grid: says so beside every verdict
    steps: int = 90
    prompts_per_step: int = 8
    group_size: int = 6
    max_new_tokens: int = 32  # the longest built-in answer (and demonstration) is 22 tokens
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

    def with_config(self, study) -> StudySpec:
        """This spec with the fields a config's ``study:`` section sets (its non-null fields)."""
        given = {k: v for k, v in study.model_dump().items() if v not in (None, {})}
        if "eval_every" not in given and "steps" in given:
            given["eval_every"] = max(1, given["steps"] // 6)
        return replace(self, **given)

    @classmethod
    def quick(cls) -> StudySpec:
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


def default_plasticity_domain(config) -> str:
    """The last structured domain that no other domain depends on (else the last domain)."""
    needed = {p for t in config.tasks for p in t.after}
    free = [t.name for t in config.tasks if t.name not in needed]
    structured = [t.name for t in config.tasks if t.kind == "structured" and t.name in free]
    return (structured or free or config.domain_names)[-1]


def kind_order(config, domains: list[str], first: str) -> list[str]:
    """Topological order of ``domains`` that puts ``first``-kind domains as early as prerequisites allow."""
    kinds = {t.name: t.kind for t in config.tasks}
    after = {t.name: [p for p in t.after if p in domains] for t in config.tasks if t.name in domains}
    rank = {n: (kinds[n] != first, domains.index(n)) for n in domains}
    return list(nx.lexicographical_topological_sort(prerequisite_graph(after), key=lambda n: rank[n]))


def arm_overlay(
    arm: str, spec: StudySpec, config, domains: list[str], transfer_file: str | None, order: list[str] | None = None
) -> dict:
    """The config changes that define ``arm`` (on top of the study's base): a custom arm's overlay
    (RL only unless it sets ``training.sft``), else the built-in arm's. ``order``: the recommended
    order (the ``order`` arm trains it in equal phases)."""
    if arm in spec.custom_arms:
        return merge_config({"training": {"sft": {"mu": {"schedule": "rl_only"}}}}, spec.custom_arms[arm])
    steps = spec.steps
    mu = {
        "rl_only": {"schedule": "rl_only"},
        "sft_only": {"schedule": "sft_only"},
        # SFT long enough for the demonstrations to be absorbed (the built-in world's new domain
        # levels off after ~60 SFT steps, docs/world.md), then RL.
        "staged": {"schedule": "staged", "sft_steps": 2 * steps // 3},
        "chord_mu": {"schedule": "cosine", "peak": 0.9, "valley": 0.05, "warmup": 0, "decay_steps": steps},
        "chord_phi": {"schedule": "constant", "value": 0.1},
        "adaptive_mu": {"schedule": "adaptive"},
        "gate": {"schedule": "gate", "gamma": 0.0},
        "layer_mu": {"schedule": "cosine", "peak": 0.9, "valley": 0.05, "warmup": 0, "decay_steps": steps},
    }
    if arm in mu:
        sft = {"mu": mu[arm], "phi": arm == "chord_phi", "layer_mu": "increasing" if arm == "layer_mu" else "uniform"}
        return {"training": {"sft": sft}, "scheduler": {"policy": "joint"}}
    if arm == "spectrum":  # backward transfer from the study's probe until the online fit exists
        scheduler = {"policy": "adaptive", "transfer_file": transfer_file, "difficulty": {"mode": "frontier"}}
        return {"training": {"sft": {"mu": {"schedule": "adaptive"}}}, "scheduler": scheduler}
    phase = max(1, steps // len(domains))
    scheduler = {
        "joint": {"policy": "joint"},
        "structured_first": {
            "policy": "sequential",
            "order": kind_order(config, domains, "structured"),
            "phase_steps": phase,
        },
        "creative_first": {
            "policy": "sequential",
            "order": kind_order(config, domains, "creative"),
            "phase_steps": phase,
        },
        "bwt": {"policy": "bwt", "phase_steps": phase, "transfer_file": transfer_file},
        "order": {"policy": "sequential", "order": order or domains, "phase_steps": phase},
        "sec": {"policy": "sec"},
        "dump": {"policy": "dump"},
        "thompson": {"policy": "thompson"},
        "learnability": {"policy": "learnability"},
        "transfer": {"policy": "transfer"},
        "adaptive": {"policy": "adaptive", "transfer_file": transfer_file, "difficulty": {"mode": "frontier"}},
    }[arm]
    return {"training": {"sft": {"mu": {"schedule": "rl_only"}}}, "scheduler": scheduler}


def study_base(config, spec: StudySpec, probe_domain: str | None) -> dict:
    """The base config of every arm: the study budget, ``probe_domain`` left out (None keeps every
    domain: the plasticity probe's config, so it trains at the study's batch and eval size)."""
    data = config.model_dump(mode="json")
    data["tasks"] = [t for t in data["tasks"] if t["name"] != probe_domain]
    for t in data["tasks"]:
        t["after"] = [p for p in t["after"] if p != probe_domain]
        t["eval"]["size"] = min(t["eval"]["size"], spec.eval_size)
    # plain: uniform mixture and levels (each arm sets its own); thresholds and sampler settings stay
    data["scheduler"] |= {"policy": "joint", "difficulty": {**data["scheduler"]["difficulty"], "mode": "uniform"}}
    data["training"].update(
        steps=spec.steps,
        prompts_per_step=spec.prompts_per_step,
        group_size=spec.group_size,
        max_new_tokens=spec.max_new_tokens,
        save_every=0,
    )
    data["eval"].update(every=spec.eval_every, max_new_tokens=spec.max_new_tokens)
    data["logging"].update(progress=False, trackers=[])
    return data


def run_study(
    config_path: Path,
    output: Path,
    spec: StudySpec,
    *,
    plasticity_domain: str | None = None,
    overrides: Sequence[Override | str] = (),
    log: Callable[[str], None] = print,
    worker_setup: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run every arm x seed, then the diagnostics; write summary.json and report.html. ``overrides``
    (``--set``) apply to the base config, under each arm's own settings. With ``spec.workers`` > 1
    the runs go to that many processes, each calling ``worker_setup`` (a picklable function: the
    entry point's process-wide set-up) first."""
    t_start = time.perf_counter()
    config_path = Path(config_path)
    base_dir = config_path.resolve().parent
    config = load_config(config_path, overrides)
    probe = plasticity_domain or default_plasticity_domain(config)
    output.mkdir(parents=True, exist_ok=True)
    base = study_base(config, spec, probe)
    domains = [t["name"] for t in base["tasks"]]

    seeds = sorted({spec.seeds_of(a) for a in spec.arms})
    log(
        f"study: {len(spec.arms)} arms x {'/'.join(map(str, seeds))} seeds, {spec.steps} steps each; "
        f"plasticity domain '{probe}'"
        + ("; a smoke run (--quick): its verdicts are not evidence" if spec.smoke else "")
    )
    probe_cfg = Config.model_validate(merge_config(base, {"run": {"output_dir": str(output / "transfer_probe")}}))
    record = probe_transfer(probe_cfg, build_domains(probe_cfg, base_dir), steps=spec.probe_steps, base_dir=base_dir)
    transfer_file = (output / "transfer.json").resolve()  # arms read it relative to the config's folder
    transfer_file.write_text(json.dumps(record, indent=2))
    order = recommend_order(probe_cfg, record)

    base_state = _base_state(config.model.name_or_path)
    plasticity = {"config": study_base(config, spec, None), "domain": probe, "steps": spec.plasticity_steps}
    jobs = []  # (arm, seed, run config) in the order the summaries keep: seed k is runs[arm][k]
    for arm in spec.arms:
        run_arm = "rl_only" if arm == "joint" and "rl_only" in spec.arms else arm
        if run_arm != arm:  # joint with rl_only's settings is the same run
            continue
        for seed in range(spec.seeds_of(run_arm)):
            run_dir = output / "runs" / f"{arm}-s{seed}"
            overlay = merge_config(
                arm_overlay(arm, spec, config, domains, str(transfer_file), order["order"]),
                {"run": {"name": f"{arm}-s{seed}", "output_dir": str(run_dir), "seed": seed}},
            )
            jobs.append((arm, seed, merge_config(base, overlay)))
    results: dict[tuple[str, int], dict[str, Any]] = {}

    def done(arm: str, seed: int, summary: dict[str, Any]) -> None:
        results[arm, seed] = summary
        log(
            f"  {arm} seed {seed}: held-out mean {summary['final_mean']:.3f} "
            f"(start {summary['eval_mean'][1][0]:.3f}) in {summary['seconds']:.0f}s"
        )

    if spec.workers <= 1:
        for arm, seed, data in jobs:
            done(arm, seed, run_one(data, str(base_dir), plasticity))
    else:  # independent runs in parallel processes, the cores split between them
        threads = max(1, torch.get_num_threads() // spec.workers)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads
        with ProcessPoolExecutor(
            spec.workers, context, initializer=_worker_init, initargs=(threads, worker_setup)
        ) as pool:
            futures = {pool.submit(run_one, data, str(base_dir), plasticity): (arm, seed) for arm, seed, data in jobs}
            for future in as_completed(futures):
                arm, seed = futures[future]
                try:
                    done(arm, seed, future.result())
                except Exception as exc:  # stop at once: the runs still queued cannot make a summary
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise SpectrumError(f"study: arm {arm} seed {seed} failed: {type(exc).__name__}: {exc}") from exc
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm, seed, _ in jobs:
        runs.setdefault(arm, []).append(results[arm, seed])
    meta = {
        "spec": asdict(spec),
        "config": str(config_path),
        "plasticity_domain": probe,
        "domains": domains,
        "kinds": {t.name: t.kind for t in config.tasks},
        "eval_sizes": {t["name"]: t["eval"]["size"] for t in base["tasks"]},  # capped at spec.eval_size
        "transfer": record["transfer"],
        "order": order,
        "seed_overlap": _seed_overlap(base_state, output, ["rl_only", "sft_only"]),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    summary = analyze(runs, meta)
    write_study(output, summary)
    log(f"study done in {summary['seconds']:.0f}s: {output / 'summary.json'}, {output / 'report.html'}")
    return summary


def analyze(runs: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> dict[str, Any]:
    """The study's summary from its per-seed runs (``runs[arm][k]`` is seed k) and what the runs
    do not hold (``meta``: spec, config, domains, kinds, eval sizes, transfer, order, seed
    overlaps, seconds): per-arm aggregates, the family of comparisons, the claims. The runs are
    kept in the summary, so ``reanalyze`` recomputes all of it without training."""
    if "joint" in meta["spec"]["arms"] and "rl_only" in runs:
        runs = {**runs, "joint": runs["rl_only"]}  # joint with rl_only's settings is the same run
    arms_summary = {}
    for arm, seeds in runs.items():
        phases = [
            {
                d: p.to_dict()
                for d, p in detect_all(
                    {**s["eval"], "mean": s["eval_mean"]},
                    loss=s["sft_nll"] if s["sft_nll"][0] else None,
                    eval_sizes=meta["eval_sizes"],
                ).items()
            }
            for s in seeds
        ]
        arms_summary[arm] = _aggregate(seeds, phases)
    family = compare_family(runs, family_pairs(list(runs)))
    claims = judge_claims(runs, arms_summary, meta["seed_overlap"], meta["kinds"], family)
    stored = {arm: seeds for arm, seeds in runs.items() if arm != "joint" or "rl_only" not in runs}
    out = {**meta, "arms": arms_summary, "claims": claims, "comparisons": family, "runs": stored}
    if "joint" in runs:
        out["curriculum"] = curriculum_verdict(runs, arms_summary, family, meta.get("order"))
    return out


CURRICULUM_GOAL = 0.05  # adaptive must beat joint by this much (issue 25), and the best baseline


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


def write_study(output: Path, summary: dict[str, Any]) -> None:
    """summary.json, report.html and claims.md of a study folder."""
    runs = dict(summary["runs"])
    if "joint" in summary["arms"] and "joint" not in runs:
        runs["joint"] = runs["rl_only"]
    # readable aggregates, then the per-seed runs on one line each (they are most of the file)
    head = json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1)
    lines = [
        f" {json.dumps(arm)}: {json.dumps(seeds, separators=(',', ':'))}" for arm, seeds in summary["runs"].items()
    ]
    (output / "summary.json").write_text(head[:-2] + ',\n "runs": {\n' + ",\n".join(lines) + "\n }\n}\n")
    write_report(output / "report.html", summary, runs)
    (output / "claims.md").write_text(claims_markdown(summary))


def reanalyze(output: Path) -> dict[str, Any]:
    """Recompute a study folder's aggregates, comparisons, claims and report from the per-seed
    runs its summary.json keeps (no training)."""
    path = Path(output) / "summary.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SpectrumError(f"{path}: cannot be read ({exc})") from None
    if "runs" not in old:
        raise SpectrumError(f"{path}: keeps no per-seed runs (written before they were kept); run the study again")
    meta = {k: old[k] for k in _META_KEYS}
    summary = analyze(old["runs"], meta)
    write_study(Path(output), summary)
    return summary


_META_KEYS = (
    "spec", "config", "plasticity_domain", "domains", "kinds", "eval_sizes", "transfer", "order", "seed_overlap",
    "seconds",
)  # fmt: skip


def run_one(data: dict[str, Any], base_dir: str, plasticity: dict[str, Any]) -> dict[str, Any]:
    """One arm x seed (``data``: its full config): train, then its summary, update sparsity and
    plasticity probe. Runs in the study's process or in a worker."""
    cfg = Config.model_validate(data)
    run_dir = Path(cfg.run.output_dir)
    t0 = time.perf_counter()
    Trainer(cfg, build_domains(cfg, Path(base_dir)), run_dir, base_dir=Path(base_dir)).train()
    summary = run_summary(run_dir)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["sparsity"] = _sparsity(_base_state(cfg.model.name_or_path), run_dir / "final")
    summary["plasticity"] = plasticity_probe(
        str(run_dir / "final"),
        Config.model_validate(plasticity["config"]),
        plasticity["domain"],
        steps=plasticity["steps"],
        base_dir=Path(base_dir),
    )
    return summary


@functools.lru_cache(maxsize=1)
def _base_state(name_or_path: str) -> dict:
    """The start model's weights, loaded once per process (every run's sparsity is measured against them)."""
    return model_state(name_or_path)


def _worker_init(threads: int, setup: Callable[[], None] | None) -> None:
    """A study worker: its share of the cores, and the entry point's process set-up (``setup``)."""
    torch.set_num_threads(threads)
    if setup is not None:
        setup()


def _aggregate(seeds: list[dict[str, Any]], phases: list[dict]) -> dict[str, Any]:
    """Mean and 95% Student-t interval over seeds of the per-run numbers, each with its n and
    method (``Interval.to_dict``; ``ci_low``/``ci_high`` are None for a single seed)."""

    def ci(values: list[float]) -> dict[str, float | int | str | None]:
        return t_interval(values).to_dict()

    domains = list(seeds[0]["final"])
    kl = [list(s["kl_to_base"].values())[-1] for s in seeds if s["kl_to_base"]]
    return {
        "final_mean": ci([s["final_mean"] for s in seeds]),
        "auc": ci([eval_auc(s) for s in seeds]),
        "informative": ci(shares)
        if (shares := [s["informative"] for s in seeds if s.get("informative") is not None])
        else None,
        "final": {d: ci([s["final"][d] for s in seeds]) for d in domains},
        "start_mean": round(float(np.mean([s["eval_mean"][1][0] for s in seeds])), 4),
        "kl_to_base": ci(kl) if kl else None,
        "plasticity_auc": ci([s["plasticity"]["auc"] for s in seeds]),
        "plasticity_steps_to_target": [s["plasticity"]["steps_to_target"] for s in seeds],
        "sparsity_unchanged": ci([s["sparsity"]["unchanged_fraction"] for s in seeds]),
        "rank_ratio": ci([s["sparsity"]["mean_rank_ratio"] for s in seeds]),
        "entropy_slope": {d: round(float(np.mean([slope(s["entropy"][d][1]) for s in seeds])), 6) for d in domains},
        "phases": phases,
        "seconds": round(float(np.mean([s["seconds"] for s in seeds])), 1),
    }


def eval_auc(run: dict[str, Any]) -> float:
    """Area under the held-out mean's curve divided by the steps it spans (trapezoids): the mean
    score over the run, so an arm that gets there sooner scores higher at the same final score."""
    steps, values = run["eval_mean"]
    if len(steps) < 2:
        return float(values[-1])
    area = sum((a + b) / 2 * (t1 - t0) for a, b, t0, t1 in zip(values, values[1:], steps, steps[1:]))
    return float(area / (steps[-1] - steps[0]))


def steps_to_reach(run: dict[str, Any], target: float) -> int | None:
    """The first eval step whose held-out mean is at least ``target`` (None: never)."""
    return next((step for step, v in zip(*run["eval_mean"]) if v >= target), None)


def family_pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """The study's family of paired comparisons (a, b) meaning a - b: every arm that ran against
    ``joint`` (rl_only is joint's run), ``adaptive`` against every baseline curriculum that ran,
    ``spectrum`` against the blends it competes with, against ``adaptive_mu`` (the same
    adaptive mu under the joint mixture: the mixture policy's own effect) and against
    ``adaptive`` (the same policy without SFT: mu's own effect), and ``chord_mu`` against
    ``staged`` (claim C1)."""
    ran = set(arms)
    pairs = [(a, "joint") for a in arms if a not in ("joint", "rl_only")] if "joint" in ran else []
    pairs += [("adaptive", b) for b in BASELINE_ARMS]
    pairs += [("spectrum", b) for b in SPECTRUM_VS if b != "joint"]
    pairs += [("spectrum", "adaptive")]  # the same scheduler with and without its mu: what SFT adds
    pairs += [("chord_mu", "staged")]
    return [(a, b) for a, b in dict.fromkeys(pairs) if a in ran and b in ran]


def _tested(a: list[float], b: list[float]) -> dict[str, Any]:
    out = paired_diff(a, b).to_dict()
    p = paired_p(a, b)
    out["p"] = None if np.isnan(p) else round(p, 6)
    return out


def _adjust(entries: list[dict[str, Any]], diffs: list[list[float]], alpha: float) -> None:
    """Holm-adjust the entries' p-values as one family, in place; add the Bonferroni interval
    (confidence 1 - alpha/m) and whether 0 is excluded after adjustment."""
    adjusted = holm([np.nan if e["p"] is None else e["p"] for e in entries])
    m = sum(e["p"] is not None for e in entries)
    level = 1 - alpha / max(m, 1)
    for e, d, p in zip(entries, diffs, adjusted):
        iv = t_interval(d, level, PAIRED_METHOD) if np.all(np.isfinite(d)) else None
        e["p_holm"] = None if np.isnan(p) else round(p, 6)
        e["adjusted"] = {
            "ci_low": None if iv is None or not iv.defined else round(iv.lo, 4),
            "ci_high": None if iv is None or not iv.defined else round(iv.hi, 4),
            "confidence": round(level, 6),
            "method": f"Bonferroni interval over the family of {m}",
        }
        e["excludes_0"] = e["p_holm"] is not None and e["p_holm"] < alpha


def compare_family(runs: dict[str, list[dict[str, Any]]], pairs: Sequence[tuple[str, str]], alpha: float = 0.05):
    """Every pair's a - b, paired by seed over the seeds both ran: the final held-out mean (the
    primary family, Holm-corrected over its pairs) and each domain's final score (the secondary
    family, Holm-corrected over every pair x domain). Each entry: the 95% interval with n and
    method, the raw two-sided p, the Holm p, the Bonferroni interval, and ``excludes_0`` (after
    adjustment)."""
    out: dict[str, Any] = {}
    primary, primary_d, secondary, secondary_d, areas, areas_d = [], [], [], [], [], []
    for a_arm, b_arm in pairs:
        n = min(len(runs[a_arm]), len(runs[b_arm]))
        a, b = runs[a_arm][:n], runs[b_arm][:n]  # seeds 0..n-1 of both, in order
        x, y = [s["final_mean"] for s in a], [s["final_mean"] for s in b]
        entry = {"final_mean": _tested(x, y), "final": {}}
        primary.append(entry["final_mean"])
        primary_d.append(np.subtract(x, y))
        if all("eval_mean" in s for s in a + b):  # runs kept before curves were stored have no area
            x, y = [eval_auc(s) for s in a], [eval_auc(s) for s in b]
            entry["auc"] = _tested(x, y)
            areas.append(entry["auc"])
            areas_d.append(np.subtract(x, y))
        for d in a[0]["final"]:
            x, y = [s["final"][d] for s in a], [s["final"][d] for s in b]
            entry["final"][d] = _tested(x, y)
            secondary.append(entry["final"][d])
            secondary_d.append(np.subtract(x, y))
        out[f"{a_arm} - {b_arm}"] = entry
    _adjust(primary, primary_d, alpha)
    _adjust(secondary, secondary_d, alpha)
    _adjust(areas, areas_d, alpha)
    return {
        "alpha": alpha,
        "method": "paired t-test per pair (seeds as the unit), Holm over the family; Bonferroni intervals; the "
        "final mean, each domain's final score and the area under the eval curve are three families",
        "primary_family_size": len(primary),
        "secondary_family_size": len(secondary),
        "comparisons": out,
    }


def _sparsity(base_state: dict, final_dir: Path) -> dict[str, Any]:
    report = update_sparsity(base_state, final_state(final_dir)).to_dict()
    return {k: report[k] for k in ("unchanged_fraction", "mean_rank_ratio", "per_layer_density")}


def _seed_overlap(base_state: dict, output: Path, arms: list[str]) -> dict[str, list[float]]:
    """|A ∩ B| / |A| of the changed-parameter masks of disjoint seed pairs (0, 1), (2, 3), ... per
    arm (C3; disjoint, so the pairs are independent units)."""
    out = {}
    for arm in arms:
        finals = sorted(output.glob(f"runs/{arm}-s*/final"), key=lambda d: int(d.parent.name.rsplit("-s", 1)[1]))
        pairs = []
        for a, b in zip(finals[0::2], finals[1::2]):
            pairs.append(
                round(
                    mask_overlap(changed_masks(base_state, final_state(a)), changed_masks(base_state, final_state(b))),
                    4,
                )
            )
        if pairs:
            out[arm] = pairs
    return out
