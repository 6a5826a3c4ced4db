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
from dataclasses import asdict, dataclass, field
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
from spectrum_rl.analysis.stats import paired_diff, t_interval
from spectrum_rl.config import Config, Override, load_config, merge_config
from spectrum_rl.domains import build_domains
from spectrum_rl.scheduler.graph import prerequisite_graph
from spectrum_rl.scheduler.signals import slope
from spectrum_rl.trainer.loop import Trainer

RECIPE_ARMS = ["rl_only", "sft_only", "staged", "chord_mu", "chord_phi", "adaptive_mu", "gate", "layer_mu"]
ORDER_ARMS = ["joint", "structured_first", "creative_first", "bwt", "transfer", "adaptive"]
C1_ARMS = ["rl_only", "staged", "chord_mu", "chord_phi", "adaptive_mu", "gate"]  # the blends C1 compares
SPECTRUM_VS = ["joint", "staged", "chord_mu"]  # the arms `spectrum` is compared with


@dataclass
class StudySpec:
    """Grid and budget. ``quick`` is a reduced grid for tests and a first look: a smoke run whose
    verdicts are not evidence. ``seeds`` per arm; the arms C1 compares get ``c1_seeds``."""

    arms: list[str] = field(default_factory=lambda: RECIPE_ARMS + ORDER_ARMS + ["spectrum"])
    seeds: int = 3
    c1_seeds: int = 5
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

    def seeds_of(self, arm: str) -> int:
        """Seeds run for ``arm``."""
        return self.c1_seeds if arm in C1_ARMS else self.seeds

    @classmethod
    def quick(cls) -> StudySpec:
        return cls(
            arms=["rl_only", "joint", "sft_only", "staged", "chord_mu", "structured_first"],
            seeds=2,
            c1_seeds=2,
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


def arm_overlay(arm: str, spec: StudySpec, config, domains: list[str], transfer_file: str | None) -> dict:
    """The config changes that define ``arm`` (on top of the study's base)."""
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
        scheduler = {"policy": "adaptive", "transfer_file": transfer_file}
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
        "transfer": {"policy": "transfer"},
        "adaptive": {"policy": "adaptive", "transfer_file": transfer_file},
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
    data["scheduler"] = {"policy": "joint"}
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
    transfer_file = output / "transfer.json"
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
                arm_overlay(arm, spec, config, domains, str(transfer_file)),
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
                done(*futures[future], future.result())
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm, seed, _ in jobs:
        runs.setdefault(arm, []).append(results[arm, seed])
    if "joint" in spec.arms and "rl_only" in runs:
        runs["joint"] = runs["rl_only"]
    masks_overlap = _seed_overlap(base_state, output, ["rl_only", "sft_only"], spec.seeds)

    arms_summary = {}
    for arm, seeds in runs.items():
        phases = [
            {
                d: p.to_dict()
                for d, p in detect_all(
                    {**s["eval"], "mean": s["eval_mean"]},
                    loss=s["sft_nll"] if s["sft_nll"][0] else None,
                    eval_sizes={t["name"]: t["eval"]["size"] for t in base["tasks"]},  # capped at spec.eval_size
                ).items()
            }
            for s in seeds
        ]
        arms_summary[arm] = _aggregate(seeds, phases)
    claims = judge_claims(runs, arms_summary, masks_overlap, config)
    summary = {
        "spec": asdict(spec),
        "config": str(config_path),
        "plasticity_domain": probe,
        "domains": domains,
        "arms": arms_summary,
        "claims": claims,
        "comparisons": compare_arms(runs, "spectrum", SPECTRUM_VS),
        "transfer": record["transfer"],
        "order": order,
        "seed_overlap": masks_overlap,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(output / "report.html", summary, runs)
    (output / "claims.md").write_text(claims_markdown(summary))
    log(f"study done in {summary['seconds']:.0f}s: {output / 'summary.json'}, {output / 'report.html'}")
    return summary


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


def compare_arms(runs: dict[str, list[dict[str, Any]]], arm: str, others: Sequence[str]) -> dict[str, Any]:
    """``arm - other`` for each other arm that ran: the final held-out mean and each domain's final
    score, paired by seed over the seeds both ran (Student t over the per-seed differences)."""
    out: dict[str, Any] = {}
    if arm not in runs:
        return out
    for other in others:
        if other not in runs:
            continue
        n = min(len(runs[arm]), len(runs[other]))
        a, b = runs[arm][:n], runs[other][:n]  # seeds 0..n-1 of both, in order
        out[f"{arm} - {other}"] = {
            "final_mean": paired_diff([s["final_mean"] for s in a], [s["final_mean"] for s in b]).to_dict(),
            "final": {
                d: paired_diff([s["final"][d] for s in a], [s["final"][d] for s in b]).to_dict() for d in a[0]["final"]
            },
        }
    return out


def _sparsity(base_state: dict, final_dir: Path) -> dict[str, Any]:
    report = update_sparsity(base_state, final_state(final_dir)).to_dict()
    return {k: report[k] for k in ("unchanged_fraction", "mean_rank_ratio", "per_layer_density")}


def _seed_overlap(base_state: dict, output: Path, arms: list[str], seeds: int) -> dict[str, float]:
    """|A ∩ B| / |A| of the changed-parameter masks of seeds 0 and 1, per arm (C3)."""
    out = {}
    for arm in arms:
        dirs = [output / "runs" / f"{arm}-s{s}" / "final" for s in range(min(seeds, 2))]
        if len(dirs) == 2 and all(d.exists() for d in dirs):
            a, b = (changed_masks(base_state, final_state(d)) for d in dirs)
            out[arm] = round(mask_overlap(a, b), 4)
    return out
