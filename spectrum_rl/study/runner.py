"""The study runner (`spectrum-rl study CONFIG`): a transfer probe on the study's world, then every
arm x seed (in worker processes when asked), each run's update sparsity against the start model
and its plasticity probe, then the summary (``summary.py``): ``summary.json``, ``report.html`` and
``claims.md`` in the output folder. The arms and the budget are defined in ``arms.py``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from spectrum_rl.analysis.probe import order_prediction, probe_transfer, recommend_order
from spectrum_rl.analysis.runs import plasticity_probe, run_summary
from spectrum_rl.analysis.sparsity import changed_masks, final_state, mask_overlap, model_state, update_sparsity
from spectrum_rl.config import Config, Override, load_config, locate_error, merge_config, parse_override
from spectrum_rl.domains import build_domains, check_demonstrations
from spectrum_rl.errors import ConfigError, SpectrumError, did_you_mean
from spectrum_rl.study.arms import StudySpec, arm_overlay, check_arms, default_plasticity_domain, study_base
from spectrum_rl.study.curriculum import short_of_budget
from spectrum_rl.study.summary import summarize, write_study
from spectrum_rl.trainer.loop import Trainer


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
    if plasticity_domain is not None and plasticity_domain not in config.domain_names:
        raise SpectrumError(
            f"--plasticity-domain: no domain '{plasticity_domain}' in {config_path}"
            f"{did_you_mean(plasticity_domain, config.domain_names)}; domains: {', '.join(config.domain_names)}"
        )
    if plasticity_domain is not None and len(config.domains) == 1:
        raise SpectrumError(
            f"--plasticity-domain: '{plasticity_domain}' is the config's only domain, and the probe's domain is held "
            "out of training; leave the flag out to run the study without the probe"
        )
    probe = plasticity_domain or default_plasticity_domain(config)
    base = study_base(config, spec, probe)
    domains = [t["name"] for t in base["domains"]]
    probe_cfg = Config.model_validate(merge_config(base, {"run": {"output_dir": str(output / "transfer_probe")}}))
    built = build_domains(probe_cfg, base_dir)
    try:  # before anything runs or is written: every arm's settings hold for these domains
        check_arms(spec.arms, spec.custom_arms)
        check_primary(spec)
        failed: dict[str, ConfigError] = {}
        for arm in spec.arms:
            arm_cfg = Config.model_validate(merge_config(base, arm_overlay(arm, spec, config, domains, None)))
            try:
                check_demonstrations(arm_cfg, built, config.domain_names)
            except ConfigError as err:
                failed[arm] = err
        if failed:  # the first arm's reason, and the study that runs without demonstrations
            arm, err = next(iter(failed.items()))
            rest = [a for a in spec.arms if a not in failed]
            instead = f"; or run the arms without them: --arms {','.join(rest)}" if rest else ""
            raise ConfigError(
                f"arm '{arm}': {err.message}{instead} (the arms that train on demonstrations: {', '.join(failed)})",
                field=err.field,
            )
    except ConfigError as err:
        parsed = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
        raise locate_error(err, config_path, parsed) from None
    output.mkdir(parents=True, exist_ok=True)

    seeds = sorted({spec.seeds_of(a) for a in spec.arms})
    log(
        f"study: {len(spec.arms)} arms x {'/'.join(map(str, seeds))} seeds, "
        + (
            f"{spec.max_rollouts} completions each (at most {spec.steps} steps); "
            if spec.max_rollouts
            else f"{spec.steps} steps each; "
        )
        + (f"plasticity domain '{probe}'" if probe else "no plasticity probe (one domain: none to hold out for C2)")
        + ("; a smoke run (--quick): its verdicts are not evidence" if spec.smoke else "")
    )
    record = probe_transfer(probe_cfg, built, steps=spec.probe_steps, base_dir=base_dir)
    transfer_file = (output / "transfer.json").resolve()  # arms read it relative to the config's folder
    transfer_file.write_text(json.dumps(record, indent=2))
    order = recommend_order(probe_cfg, record)
    order["reverse"] = order_prediction(probe_cfg, record, list(reversed(order["order"])))

    base_state = _base_state(config.model.name_or_path)
    plasticity = {"config": study_base(config, spec, None), "domain": probe, "steps": spec.plasticity_steps}
    jobs = []  # (arm, seed, run config) in the order the summaries keep: seed k is runs[arm][k]
    for arm in spec.arms:
        run_arm = "rl_only" if arm == "joint" and "rl_only" in spec.arms else arm
        if run_arm != arm:  # joint with rl_only's settings is the same run
            continue
        for seed in range(spec.first_seed, spec.first_seed + spec.seeds_of(run_arm)):
            run_dir = output / "runs" / f"{arm}-s{seed}"
            overlay = merge_config(
                arm_overlay(arm, spec, config, domains, str(transfer_file), order["order"]),
                {"run": {"name": f"{arm}-s{seed}", "output_dir": str(run_dir), "seed": seed}},
            )
            jobs.append((arm, seed, merge_config(base, overlay)))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    t_runs = time.perf_counter()

    def done(arm: str, seed: int, summary: dict[str, Any]) -> None:
        results[arm, seed] = summary
        left = (time.perf_counter() - t_runs) / len(results) * (len(jobs) - len(results))  # runs take alike
        log(
            f"  [{len(results)}/{len(jobs)}] {arm} seed {seed}: held-out mean {summary['final_mean']:.3f} "
            f"(start {summary['eval_mean'][1][0]:.3f}) in {summary['seconds']:.0f}s"
            + (f"; about {_duration(left)} left" if len(results) < len(jobs) else "")
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
        "kinds": {t.name: t.kind for t in config.domains},
        "eval_sizes": {t["name"]: t["eval"]["size"] for t in base["domains"]},  # capped at spec.eval_size
        "transfer": record["transfer"],
        "order": order,
        "seed_overlap": _seed_overlap(base_state, output, ["rl_only", "sft_only"]),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    summary = summarize(runs, meta)
    write_study(output, summary)
    short = short_of_budget(runs, meta["spec"])
    if short:
        log(
            f"warning: {len(short)} runs stopped at the step cap ({spec.steps} steps) before the budget of "
            f"{spec.max_rollouts} completions ({', '.join(short[:4])}{', ...' if len(short) > 4 else ''}): those arms "
            "are not compared at equal compute; raise study.steps"
        )
    log(f"study done in {summary['seconds']:.0f}s: {output / 'summary.json'}, {output / 'report.html'}")
    return summary


PRIMARY_SEEDS = 8  # a pre-registered comparison rests on at least this many seeds per arm


def check_primary(spec: StudySpec) -> None:
    """The pre-registered comparison names two arms that run, each with at least PRIMARY_SEEDS seeds."""
    if spec.primary is None or spec.smoke:
        return
    for arm in spec.primary.split(" - "):
        ran = arm in spec.arms or (arm == "joint" and "rl_only" in spec.arms)
        if not ran:
            raise ConfigError(f"arm '{arm}' does not run in this study", field="study.primary")
        n = spec.seeds_of("rl_only" if arm == "joint" and "rl_only" in spec.arms else arm)
        if n < PRIMARY_SEEDS:
            raise ConfigError(
                f"arm '{arm}' runs {n} seeds; the primary comparison needs at least {PRIMARY_SEEDS} (put it in "
                "study.claim_arms with claim_seeds >= 8)",
                field="study.primary",
            )


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
    summary["plasticity"] = None
    if plasticity["domain"] is not None:  # a study of one domain has none to hold out
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


def _duration(seconds: float) -> str:
    """``seconds`` as a person reads a wait: 40 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
