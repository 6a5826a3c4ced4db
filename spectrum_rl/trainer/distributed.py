"""The collectives of a step, in one place: every process calls each of them in the same order
(a process that skips one leaves the others waiting). With one process they reduce to nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator

from spectrum_rl.scheduler.step import StepSignals
from spectrum_rl.trainer.metrics import SignalSums, Sums


def sum_over_processes(acc: Accelerator, values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, so counts stay exact)."""
    if acc.num_processes == 1:
        return [float(v) for v in values]
    return acc.reduce(torch.tensor(list(values), dtype=torch.float64, device=acc.device), "sum").cpu().tolist()


def gather_lists(acc: Accelerator, items: list[Any]) -> list[Any]:
    """Every process's ``items`` (picklable), concatenated in process order."""
    if acc.num_processes == 1:
        return list(items)
    per_process: list[Any] = [None] * acc.num_processes
    dist.all_gather_object(per_process, items)
    return [x for part in per_process for x in part]


def agreed_signal(acc: Accelerator, signum: int | None) -> int:
    """The stop signal any process received (0: none), so that all processes stop together."""
    if acc.num_processes == 1:
        return signum or 0
    flag = torch.tensor([signum or 0], device=acc.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag)


def _metric_names(acc: Accelerator, names: Sequence[str]) -> list[str]:
    """The union of every process's metric names, so the reduce lines up."""
    if acc.num_processes == 1:
        return sorted(names)
    per_process: list[Any] = [None] * acc.num_processes
    dist.all_gather_object(per_process, sorted(names))
    return sorted({n for names_r in per_process for n in names_r})


def reduce_step(
    acc: Accelerator, sums: Sums, signals: SignalSums, alignment: dict[str, dict[str, float]] | None
) -> tuple[dict[str, Any], StepSignals]:
    """Metric means over all processes (a count of 0 means "sum, not mean") and the step's
    signals, in one all-reduce."""
    names = _metric_names(acc, list(sums.values))
    local = [v for n in names for v in sums.values.get(n, [0.0, 0.0])] + signals.flat()
    flat = sum_over_processes(acc, local)
    out: dict[str, Any] = {}
    for i, n in enumerate(names):
        total, count = flat[2 * i], flat[2 * i + 1]
        out[n] = round(total / count, 6) if count else round(total, 6)
    return out, signals.signals(flat[2 * len(names) :], alignment)
