"""Command-line interface: ``spectrum-rl COMMAND ...``.

Exit codes: 0 done; 2 a user error (bad config, data, paths: ONE line on stderr naming file and
field, nothing written); 1 training could not go on (e.g. NaN/inf losses several steps in a row);
130/143 interrupted by SIGINT/SIGTERM after a checkpoint. ``--debug`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spectrum_rl.config import Config, Override, load_config, locate_error, parse_override, reference_markdown
from spectrum_rl.cpu.host_memory import reuse_freed_memory
from spectrum_rl.domains import BuiltDomain, build_domains
from spectrum_rl.errors import ConfigError, SpectrumError, TrainingError, TrainingInterrupted
from spectrum_rl.models import BUILTIN_MODELS, adapter_base
from spectrum_rl.rewards.text import printable
from spectrum_rl.scheduler.graph import build_domain_graph, to_dot

if TYPE_CHECKING:
    from spectrum_rl.study.arms import StudySpec

# The modules that train, probe or analyse import torch's training stack and transformers' models
# (seconds); each command imports them when it runs, so `--help`, `validate` and `domains` stay quick.

EXIT_USER_ERROR = 2


def _overrides(args: argparse.Namespace) -> list[Override]:
    """The command's config overrides: ``--set FIELD=VALUE`` flags, then ``train``'s shortcuts
    (``--max-steps``, ``--save-every``, ``--output-dir``)."""
    out = [parse_override(text) for text in args.set or []]
    if args.command == "train":
        for flag, field in (
            ("max_steps", "training.steps"),
            ("save_every", "training.save_every"),
            ("output_dir", "run.output_dir"),
        ):
            value = getattr(args, flag)
            if value is not None:
                out.append(Override(field.split("."), value, f"--{flag.replace('_', '-')} {value}"))
    return out


def _load(args: argparse.Namespace) -> tuple[Config, list[BuiltDomain], Path]:
    """Config (with overrides) + built domains + the config's folder; errors located in the file."""
    overrides = _overrides(args)
    config = load_config(args.config, overrides)
    base_dir = Path(args.config).resolve().parent
    try:
        return config, build_domains(config, base_dir), base_dir
    except ConfigError as err:
        raise locate_error(err, args.config, overrides) from None


def _prepare_models(config: Config) -> None:
    """Entry-point set-up of a command that trains: build any built-in model the config names
    (first use), and on CPU reuse freed host memory when the config asks (process-wide)."""
    from spectrum_rl.bootstrap import ensure_builtin_models

    ensure_builtin_models(config)
    if config.training.reuse_host_memory:
        _reuse_host_memory()


def _reuse_host_memory() -> None:
    """Process-wide: keep freed host memory for reuse on CPU runs (also each study worker's set-up)."""
    if not torch.cuda.is_available():
        reuse_freed_memory()


def cmd_validate(args: argparse.Namespace) -> int:
    config, domains, _ = _load(args)
    if config.study.arms or config.study.primary:  # the study section too, as `study` would check it
        from spectrum_rl.study.arms import StudySpec

        _check_study(StudySpec().with_config(config.study), args)
    graph = build_domain_graph(domains)
    table = Table(title=f"{args.config}: {len(domains)} domains", title_justify="left")
    for col in ("domain", "kind", "source", "reward", "after"):
        table.add_column(col, overflow="fold")
    for d in domains:
        table.add_row(d.name, d.kind, d.source.describe(), d.reward.describe(), ", ".join(d.after) or "-")
    console = Console()
    console.print(table)
    edges = ", ".join(f"{u} -> {v}" for u, v in graph.edges) or "none"
    base = adapter_base(config.model.name_or_path)
    adapter = "" if base is None else f" (a PEFT adapter: its base {base}, the adapter merged in at load)"
    console.print(f"model: {config.model.name_or_path}{escape(adapter)}   prerequisites: {edges}")
    console.print("[green]config is valid[/green]")
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    config, domains, _ = _load(args)
    if args.dot:
        scores, transfer = {}, None
        if args.run:  # annotate with a run's latest held-out scores and transfer estimate
            from spectrum_rl.analysis.probe import transfer_from_run
            from spectrum_rl.trainer.checkpoint import read_jsonl

            evals = read_jsonl(Path(args.run) / "eval.jsonl")
            scores = {k[5:]: v for k, v in (evals[-1] if evals else {}).items() if k.startswith("eval/")}
            transfer = transfer_from_run(Path(args.run), config.domain_names)["transfer"]
        print(to_dot(build_domain_graph(domains, scores, transfer=transfer)))
        return 0
    console = Console(soft_wrap=True)
    rng = random.Random(config.run.seed)
    for d in domains:
        size = "unlimited" if d.source.size is None else str(d.source.size)
        console.print(
            f"[bold]{d.name}[/bold]  {escape(f'[{d.kind}]')}  {escape(d.source.describe())}  "
            f"{size} train / {len(d.eval_examples())} eval",
            markup=True,
            highlight=False,
        )
        console.print(f"  reward: {escape(d.reward.describe())}", highlight=False)
        console.print(f"  after:  {', '.join(d.after) or '-'}", highlight=False)
        levels = None
        if d.source.ladder:  # the scheduler picks each prompt's level (scheduler.difficulty): samples span them
            lo, hi = d.source.ladder
            console.print(f"  levels: {lo}-{hi}", highlight=False)
            levels = [lo + (hi - lo) * i // max(1, args.samples - 1) for i in range(args.samples)]
        for example in d.sample(args.samples, rng, levels=levels):
            system = "" if example.system is None else f"system {example.system!r}, "
            level = "" if example.level is None else f"level {example.level}, "
            answer = example.reference  # what the reward compares with, as read
            shown = level + system + repr(example.prompt) + ("" if answer is None else f" -> {answer!r:.80}")
            console.print(f"  sample: {escape(shown)}", highlight=False)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from spectrum_rl.rewards.text import error_summary
    from spectrum_rl.rewards.timeout import call_with_timeout

    config, domains, _ = _load(args)
    domain = next((d for d in domains if d.name == args.domain), None)
    if domain is None:
        raise SpectrumError(
            f"--domain {args.domain}: no such domain in {args.config}; domains: {', '.join(config.domain_names)}"
        )
    examples = domain.eval_examples()
    if not 0 <= args.index < len(examples):
        raise SpectrumError(
            f"--index {args.index}: domain '{domain.name}' has {len(examples)} held-out rows (0 to {len(examples) - 1})"
        )
    try:
        completion = sys.stdin.read() if args.completion == "-" else Path(args.completion).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpectrumError(
            f"--completion {args.completion!r}: cannot read it ({error_summary(exc)}); it takes a file holding "
            "the completion, or - to read it from stdin"
        ) from None
    example = examples[args.index]
    print(f"domain {domain.name}, held-out row {args.index}: {example.prompt.strip()[:200]!r}")
    if example.answers:
        print(f"accepted answers: {', '.join(repr(a[:80]) for a in example.answers[:10])}")
    elif example.answer is not None:
        print(f"reference: {example.answer[:200]!r}")
    total = 0.0
    for name, component in zip(domain.reward.names, domain.reward.components):
        try:  # within the component's own time limit, as training would score it
            explain = functools.partial(component.explain, completion, example)
            score, lines = call_with_timeout(explain, component.spec.timeout_s)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - show a failing component, as training would count it
            score, lines = 0.0, [f"error (on_error: {component.spec.on_error}): {error_summary(exc)}"]
        total += component.spec.weight * score
        print(f"{name}: {score:.4f}  (weight {component.spec.weight:g})")
        for line in lines:  # model output (its code's errors) is shown escaped, never interpreted
            print(f"  {printable(line)}")
    print(f"total: {total:.4f}  ({domain.reward.describe()})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from spectrum_rl.trainer.run import run_training

    config, domains, base_dir = _load(args)
    try:
        run_training(
            config,
            domains,
            resume=args.resume,
            overwrite=args.overwrite,
            base_dir=base_dir,
            prepare=lambda: _prepare_models(config),
        )
    except ConfigError as err:
        raise locate_error(err, args.config, _overrides(args)) from None
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    from spectrum_rl.study.gates import gate_lines, measure_gates

    config, _, base_dir = _load(args)
    _prepare_models(config)
    output = Path(args.output_dir.replace("{name}", config.run.name))
    result = measure_gates(config, base_dir, output, seeds=args.seeds, prompts=args.prompts, log=print)
    print("\n".join(gate_lines(result)))
    print(f"written: {output / 'gates.json'}")
    return 0


def cmd_order(args: argparse.Namespace) -> int:
    from spectrum_rl.api import recommend_order

    config = load_config(args.config, _overrides(args))
    if config.training.reuse_host_memory and not args.run:
        _reuse_host_memory()
    console = Console(stderr=True)
    result = recommend_order(
        args.config,
        probe_steps=args.probe_steps,
        run_dir=args.run,
        overrides=args.set or [],
        log=console.print,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    kinds = {t.name: t.kind for t in config.domains}
    table = Table(
        title=f"recommended order ({'exact' if result.exact else 'heuristic'}; transfer from {result.source})",
        title_justify="left",
    )
    for col in ("#", "domain", "kind", "why"):
        table.add_column(col, overflow="fold")
    for i, n in enumerate(result.order, 1):
        table.add_row(str(i), n, kinds[n], result.rationale[n])
    Console().print(table)
    Console(soft_wrap=True).print(escape(result.summary))  # one line; its [lo, hi] is not markup
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from spectrum_rl.analysis.analyze import analyze_run

    result = analyze_run(Path(args.run_dir), plasticity_domain=args.plasticity, plasticity_steps=args.plasticity_steps)
    found = {d: [k for k, v in p.items() if v] for d, p in result["phases"].items()}
    print(
        f"final held-out mean {result['final_mean']:.3f}; phases: "
        + "; ".join(f"{d}: {', '.join(v) or 'none'}" for d, v in found.items())
    )
    if "sparsity" in result:
        print(f"unchanged parameters (bf16): {result['sparsity']['unchanged_fraction']:.3f}")
    print(f"wrote {Path(args.run_dir) / 'analysis'}/analysis.json and plots")
    return 0


def _print_claims(summary: dict) -> None:
    from spectrum_rl.study.report import p_text, speed_text

    for cid, claim in summary["claims"].items():
        print(f"{cid}: {claim['verdict']} — {claim['reason']}")
    goal = summary.get("curriculum", {}).get("goal")
    if goal:
        diff, best = goal["adaptive - joint"], goal["best_baseline"]
        test = (
            f"primary, p {p_text(diff['p'])}" if diff.get("role") == "primary" else f"Holm p {p_text(diff['p_holm'])}"
        )
        line = f"curriculum: adaptive - joint {diff['mean']:+.3f} (n={diff['n']}, {test})"
        speed = speed_text(summary)
        line += f"; {speed}" if speed else ""
        if best:
            vs = goal["adaptive - best_baseline"]
            line += f"; adaptive - {best} (best baseline) {vs['mean']:+.3f} (Holm p {p_text(vs['p_holm'])})"
        void = " (void: the oracle leaves less than the goal's margin)" if goal.get("void") else ""
        print(line + f"; goal {'met' if goal['met'] else 'not met'}{void} ({goal['rule']})")


def _check_study(spec: StudySpec, args: argparse.Namespace) -> None:
    """The study's arms and primary comparison, before anything runs: an error names the field in
    the config, or ``--arms`` when the flag chose the arms."""
    from spectrum_rl.study.arms import check_arms
    from spectrum_rl.study.runner import check_primary

    try:
        check_arms(spec.arms, spec.custom_arms)
        check_primary(spec)
    except ConfigError as err:
        if getattr(args, "arms", None) and err.field.startswith("study.arms"):
            raise SpectrumError(f"--arms: {err.message}") from None
        raise locate_error(err, args.config, _overrides(args)) from None


def cmd_study(args: argparse.Namespace) -> int:
    from spectrum_rl.study.arms import StudySpec
    from spectrum_rl.study.runner import run_study
    from spectrum_rl.study.summary import reanalyze

    if (args.reanalyze is None) == (args.config is None):
        raise SpectrumError("study: give a config to run a study, or --reanalyze DIR to re-analyse one (not both)")
    if args.reanalyze is not None:
        summary = reanalyze(Path(args.reanalyze))
        _print_claims(summary)
        return 0
    config, _, _ = _load(args)  # fail fast, one line
    _prepare_models(config)
    if args.quick:  # the smoke grid; arms the config defines stay resolvable
        spec = replace(StudySpec.quick(), custom_arms=config.study.custom_arms, first_seed=config.study.first_seed or 0)
    else:
        spec = StudySpec().with_config(config.study)
    if args.seeds:  # every arm, the C1 arms included
        spec = replace(spec, seeds=args.seeds, claim_seeds=args.seeds)
    if args.max_steps:
        spec = replace(
            spec,
            steps=args.max_steps,
            eval_every=max(1, args.max_steps // 2),
            plasticity_steps=min(spec.plasticity_steps, args.max_steps),
            probe_steps=1,
        )
    if args.arms:
        spec = replace(spec, arms=args.arms.split(","))
    _check_study(spec, args)
    if args.workers is not None:
        spec = replace(spec, workers=max(1, args.workers))
    elif not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2:
        spec = replace(spec, workers=2)
    summary = run_study(
        Path(args.config),
        Path(args.output_dir),
        spec,
        plasticity_domain=args.plasticity_domain,
        overrides=_overrides(args),
        worker_setup=_reuse_host_memory if config.training.reuse_host_memory else None,
    )
    _print_claims(summary)
    if spec.smoke:
        print("--quick is a smoke run (a reduced grid of 24-step runs): these verdicts are not evidence")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from spectrum_rl.bootstrap import RECIPES, bootstrap, compare_with_shipped

    given = {"seed": args.seed, "steps": args.steps}
    cfg = replace(RECIPES[args.model], **{k: v for k, v in given.items() if v is not None})
    output = Path(args.output_dir) if args.output_dir else None
    out = bootstrap(cfg, output=output, force=args.force, name=args.model)
    print(f"built-in model ready: {out}")
    if cfg == RECIPES[args.model]:  # the shipped recipe: the rebuild should do what the shipped model does
        lines, ok = compare_with_shipped(out, args.model)
        print("\n".join(lines))
        return 0 if ok else 1
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectrum-rl",
        description="Curriculum-scheduled post-training on a continuous SFT<->RL spectrum.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        p.set_defaults(fn=fn)
        return p

    def add_config(p: argparse.ArgumentParser, help: str = "path to a run YAML", optional: bool = False) -> None:
        p.add_argument("config", help=help, nargs="?" if optional else None)
        p.add_argument(
            "--set",
            action="append",
            metavar="FIELD=VALUE",
            help="override a config field, validated "
            "like the file; repeatable (e.g. --set training.steps=50 --set scheduler.policy=adaptive)",
        )

    def add_output_dir(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
        p.add_argument("--output-dir", default=default, help=help)
        p.add_argument("--output", dest="output_dir", help=argparse.SUPPRESS)  # the old spelling

    p = add("validate", cmd_validate, "check a config and print a summary (writes nothing)")
    add_config(p)

    p = add("domains", cmd_domains, "list the configured domains with sample prompts")
    add_config(p)
    p.add_argument("--dot", action="store_true", help="print the domain graph in Graphviz DOT instead")
    p.add_argument("--run", default=None, help="with --dot: add a run's scores and transfer edges")
    p.add_argument("--samples", type=int, default=3, help="sample prompts per domain (default 3)")

    p = add(
        "score", cmd_score, "score one completion of a held-out row with the domain's reward, component by component"
    )
    add_config(p)
    p.add_argument("--domain", required=True, help="domain name")
    p.add_argument("--index", type=int, required=True, help="held-out row (0-based), as evaluation uses them")
    p.add_argument("--completion", required=True, help="file holding the completion text (-: read it from stdin)")

    p = add("train", cmd_train, "train on the configured domains (the main job)")
    add_config(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run dir")
    p.add_argument("--overwrite", action="store_true", help="start over in a run dir that has checkpoints")
    p.add_argument("--max-steps", type=int, default=None, help="override training.steps")
    p.add_argument("--output-dir", default=None, help="override run.output_dir")
    p.add_argument("--save-every", type=int, default=None, help="override training.save_every")

    p = add("order", cmd_order, "recommend a training order of the domains (probes transfer, or reads a run)")
    add_config(p)
    p.add_argument("--probe-steps", type=int, default=10, help="training steps per domain probe (default 10)")
    p.add_argument("--run", default=None, help="use the transfer/entropy estimates of this run directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("gates", cmd_gates, "check that curriculum can matter in a world (headroom, ladders, dead weight, ...)")
    add_config(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the headroom runs (default 3)")
    p.add_argument("--prompts", type=int, default=48, help="prompts per difficulty level (default 48)")
    add_output_dir(p, "runs/gates/{name}", "where the runs and gates.json go")

    p = add("study", cmd_study, "run the SFT<->RL study (arms x seeds) and write summary.json + report.html")
    add_config(p, "base run YAML (domains, model, recipe defaults); not with --reanalyze", optional=True)
    p.add_argument(
        "--reanalyze",
        metavar="DIR",
        default=None,
        help="recompute a study folder's aggregates, comparisons, claims and report from the per-seed runs in its "
        "summary.json, without training",
    )
    p.add_argument("--quick", action="store_true", help="reduced grid (6 arms x 2 seeds, 24 steps)")
    add_output_dir(p, "study", "output folder (default: study)")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per arm, for every arm (default 3, and 5 for the arms C1 compares; quick 2)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override the steps per run")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all)")
    p.add_argument("--plasticity-domain", default=None, help="domain held out for the plasticity probe")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs in parallel, each in its own process with its share of the CPU threads "
        "(default: 2 on a CPU with 2 or more cores, else 1; use 1 for models that need every core)",
    )

    p = add("analyze", cmd_analyze, "diagnostics of one run directory (phases, drift, sparsity, entropy)")
    p.add_argument("run_dir", help="a run directory written by `train`")
    p.add_argument("--plasticity", default=None, metavar="DOMAIN", help="also probe plasticity on this domain")
    p.add_argument("--plasticity-steps", type=int, default=16, help="steps of the plasticity probe")

    add("schema", cmd_schema, "print the YAML reference (every field, default and meaning) as Markdown")

    p = add(
        "bootstrap",
        cmd_bootstrap,
        "rebuild a built-in model (builtin:tiny, builtin:ladder, ...) in the cache and compare it with the shipped one",
    )
    p.add_argument("--model", choices=list(BUILTIN_MODELS), default="tiny", help="which built-in model (default tiny)")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: built-in recipe)")
    p.add_argument("--seed", type=int, default=None, help="pretraining seed (default: the built-in recipe's)")
    add_output_dir(p, None, "folder to write instead of the cache")
    return parser


def _quiet_libraries() -> None:
    """Hide per-file load/save progress bars of transformers/datasets (ours is enough)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if not args.debug:
        warnings.formatwarning = _one_line_warning
    try:
        return args.fn(args)
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 128 + err.signum
    except TrainingError as err:
        if args.debug:
            raise
        print(f"error: {printable(str(err))}", file=sys.stderr)
        return 1
    except SpectrumError as err:
        if args.debug:
            raise
        print(f"error: {printable(str(err))}", file=sys.stderr)  # always one line, control characters escaped
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _close_process_group()


_PROCESS_GROUP = {"closed": False}  # whether this run used torch.distributed (set when it is torn down)


def _close_process_group() -> None:
    """Tear down torch.distributed's process group (torchrun's, accelerate's, or a sharded run's own)
    once the command is done, so no peer is left waiting on this process."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _PROCESS_GROUP["closed"] = True


def entry() -> None:
    """The ``spectrum-rl`` program (and ``python -m spectrum_rl``): ``main``, then exit with its code.

    A process that used torch.distributed exits without the interpreter's teardown, once its output
    is flushed: in that teardown a C++ destructor of PyTorch's CPU collective stack aborted about 1 in
    15 finished sharded processes (SIGABRT, "terminate called without an active exception"), after all
    work was written and the process group destroyed, which made torchrun report a failed run."""
    code = main()
    if _PROCESS_GROUP["closed"]:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
