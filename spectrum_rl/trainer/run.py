"""`spectrum-rl train`: prepare the run directory, run the Trainer with a progress bar, summarise."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from spectrum_rl.config import Config
from spectrum_rl.domains import BuiltDomain
from spectrum_rl.errors import ConfigError
from spectrum_rl.scheduler.continual import held_out_course
from spectrum_rl.trainer.checkpoint import list_checkpoints, read_jsonl
from spectrum_rl.trainer.lock import RunLock
from spectrum_rl.trainer.loop import Trainer


def make_output_dir(path: Path) -> None:
    """Create the run folder and check it is writable, before any work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create '{path}': {exc.strerror}", field="run.output_dir") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"'{path}' is not writable", field="run.output_dir")


def prepare_output_dir(path: Path, *, resume: bool, overwrite: bool, main: bool) -> None:
    """Refuse to mix two runs in one folder; with ``overwrite`` clear the old run's weights."""
    has_run = list_checkpoints(path / "checkpoints") or (path / "metrics.jsonl").exists()
    if has_run and not (resume or overwrite):
        raise ConfigError(
            f"'{path}' already holds a run; pass --resume to continue it or --overwrite to start over",
            field="run.output_dir",
        )
    if main and overwrite:
        for name in ("checkpoints", "final"):
            shutil.rmtree(path / name, ignore_errors=True)


def run_training(
    config: Config,
    domains: list[BuiltDomain],
    *,
    resume: bool = False,
    overwrite: bool = False,
    base_dir: Path | None = None,
    console=None,
    prepare: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Train and return the final held-out scores. Prints progress and a summary on the main process.

    ``prepare`` runs once the run folder is checked and locked, before the model loads: the CLI
    builds a missing built-in model there, so bad input fails before any such work."""
    out = config.output_path
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    # the topmost folder this call creates (None when out exists): removed again on bad input
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None) if rank_zero else None
    if rank_zero:
        make_output_dir(out)
    with RunLock(out) if rank_zero else contextlib.nullcontext():  # one live run per folder
        try:
            prepare_output_dir(out, resume=resume, overwrite=overwrite, main=rank_zero)
            if prepare is not None:
                prepare()
            trainer = Trainer(config, domains, out, resume=resume, base_dir=base_dir)
        except ConfigError:
            if created is not None:  # bad input (e.g. a folder that holds no model) leaves nothing behind
                shutil.rmtree(created, ignore_errors=True)
            raise
        console = console or Console(stderr=True)
        show = config.logging.progress and trainer.state.is_main
        budget = config.training.max_rollouts  # a budget in completions: the bar counts them, not steps
        if show:
            console.print(f"precision: {trainer.state.precision}")
            if resume:  # what --resume found: the steps after the checkpoint are run again
                spent = (
                    f"{trainer.rollouts} of {budget} completions" if budget else f"{config.training.steps} steps in all"
                )
                said = f"resuming from checkpoints/step-{trainer.step} ({spent})"
                console.print(said if trainer.step else "--resume found no checkpoint here: starting at step 0")
        decisions: list[dict[str, Any]] = []

        def on_step(m: dict[str, Any]) -> None:
            bar.update(m)
            kept = ("step", "mu", "mixture", "completions/clipped_ratio")
            decisions.append({k: v for k, v in m.items() if k in kept or k.startswith("difficulty/")})

        total, done = (budget, trainer.rollouts) if budget else (config.training.steps, trainer.step)
        with _Progress(total, done, show, console, completions=bool(budget)) as bar:
            scores = trainer.train(on_step=on_step)
    if trainer.state.is_main:
        if decisions and config.logging.progress:
            _print_table(console, scheduler_table(decisions, config.domain_names))
        evals = read_jsonl(out / "eval.jsonl")
        held_out = [(d.name, d.eval_examples()) for d in trainer.domains.values()]
        sizes = {name: len(examples) for name, examples in held_out}
        sizes |= Counter(f"{name}@{e.level}" for name, ex in held_out for e in ex if e.level is not None)  # per level
        _print_table(console, held_out_table(evals, config.domain_names, sizes))
        mean = sum(scores.values()) / max(len(scores), 1)
        spent = f", {trainer.rollouts} completions (budget {budget})" if budget else ""
        console.print(f"done: {trainer.step} steps{spent}; held-out mean {mean:.3f}")
        clipped = [d["completions/clipped_ratio"] for d in decisions if "completions/clipped_ratio" in d]
        if clipped and (share := sum(clipped) / len(clipped)) >= 0.5:  # a cap shorter than the task's answers
            console.print(
                f"note: {share:.0%} of the completions reached training.max_new_tokens "
                f"({config.training.max_new_tokens}) before ending; if answers are cut off there"
                + (" (completions.jsonl shows some)" if (out / "completions.jsonl").exists() else "")
                + ", raise it"
            )
        made = [
            n
            for n in ("metrics.jsonl", "eval.jsonl", "completions.jsonl", "checkpoints/", "final/")
            if (out / n).exists()
        ]
        console.print(f"run directory: {out} ({', '.join(made)})")
    return scores


def held_out_table(evals: list[dict[str, Any]], names: list[str], sizes: dict[str, int]) -> Table:
    """Each domain's held-out score at the run's first evaluation, its best and its last, flagged
    where the end is below the start (or the best) by more than two standard errors; the run's BWT
    (mean of end - best) below (scheduler/continual.py ``held_out_course``). A ladder's levels
    follow its row, unflagged (a level holds a few rows)."""
    course, bwt, se = held_out_course(evals, names, sizes)
    first, last = (evals[0]["step"], evals[-1]["step"]) if evals else (0, 0)
    table = Table(
        title="held-out score per domain (! = more than 2 SE below)",
        title_justify="left",
        caption=f"BWT (mean of end - best) {bwt:+.3f} ± {2 * se:.3f}" + (" !" if -bwt > 2 * se else ""),
        caption_justify="left",
    )
    for col in ("domain", "n", f"step {first}", "best", f"step {last}", "change", ""):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for d, c in course.items():
        flags = ("! fell" if c.fell else "") + (" ! forgot" if c.forgot and not c.fell else "")
        cells = (f"{c.start:.2f}", f"{c.best:.2f}", f"{c.end:.2f}", f"{c.end - c.start:+.2f}")
        table.add_row(d, str(c.n), *cells, flags.strip())
        levels = [k for k in evals[-1] if k.startswith(f"eval_level/{d}@")] if evals else []
        for key in sorted(levels, key=lambda k: int(k.rsplit("@", 1)[1])):
            scores = [e[key] for e in evals if key in e]
            cells = (f"{scores[0]:.2f}", f"{max(scores):.2f}", f"{scores[-1]:.2f}", f"{scores[-1] - scores[0]:+.2f}")
            table.add_row(f"  @{key.rsplit('@', 1)[1]}", str(sizes.get(key.split("/", 1)[1], "")), *cells, "")
    return table


def scheduler_table(decisions: list[dict[str, Any]], names: list[str], parts: int = 4) -> Table:
    """What the scheduler did: per quarter of the steps just run, mean mu and each domain's mean
    share of the rollouts with, for a range knob, the mean difficulty level drawn."""
    table = Table(title="what the scheduler did (means over each quarter of the run)", title_justify="left")
    for col in ("steps", "mu", *names):
        table.add_column(col, justify="right")
    size = max(1, -(-len(decisions) // parts))
    for start in range(0, len(decisions), size):
        chunk = decisions[start : start + size]
        cells = [f"{chunk[0]['step']}-{chunk[-1]['step']}", f"{sum(m['mu'] for m in chunk) / len(chunk):.2f}"]
        for n in names:
            share = sum(m["mixture"].get(n, 0.0) for m in chunk) / len(chunk)
            levels = [m[f"difficulty/{n}"] for m in chunk if f"difficulty/{n}" in m]
            cells.append(f"{share:.2f}" + (f" @{sum(levels) / len(levels):.1f}" if levels else ""))
        table.add_row(*cells)
    return table


def _print_table(console, table: Table) -> None:
    """``table`` under its title on a line of its own (rich wraps a title to the table's width)."""
    title, table.title = table.title, None
    console.print(title)
    console.print(table)


class _Progress:
    """A rich progress bar showing step, reward, mu, the top of the mixture and tokens/s; it counts
    completions generated instead of steps when the run's budget is in completions."""

    def __init__(self, total: int, start: int, enabled: bool, console, completions: bool = False) -> None:
        self.enabled, self.completions = enabled, completions
        if not enabled:
            return
        self.progress = Progress(
            TextColumn("completions" if completions else "step"),
            MofNCompleteColumn(),
            BarColumn(bar_width=20),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, m: dict[str, Any]) -> None:
        if not self.enabled:
            return
        seconds = sum(v for k, v in m.items() if k.startswith("time/"))
        tokens = m.get("completions/tokens", 0.0)
        top = sorted(m.get("mixture", {}).items(), key=lambda kv: -kv[1])[:3]
        info = (
            (f"step {m['step']}  " if self.completions else "")
            + f"reward {m.get('reward', float('nan')):.3f}  mu {m['mu']:.2f}  "
            + " ".join(f"{k}:{v:.2f}" for k, v in top)
            + (f"  {tokens / seconds:.0f} tok/s" if tokens and seconds else "")
        )
        self.progress.update(self.task, completed=m["rollouts/total" if self.completions else "step"], info=info)
