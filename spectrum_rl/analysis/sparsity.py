"""Update sparsity between two checkpoints (claim C3; Mukherjee et al., arXiv:2505.11711).

Both state dicts are cast to bfloat16 and compared in float32, ``Δ = bf16(θ_after) - bf16(θ_before)``.
An element is *unchanged* when ``|Δ| <= tol`` (paper: tol 1e-5; RL leaves 70–95% unchanged, SFT
is dense). For every 2-D matrix the rank ratio is ``rank(Δ) / min(shape)`` (RL updates are nearly
full rank), with ``torch.linalg.matrix_rank``'s default tolerance: singular values above
``σ_max * max(shape) * eps(float32)`` count. The cross-seed overlap of changed-masks is
``|A ∩ B| / |A|``.

Only floating tensors present in both state dicts are compared; tensors are processed one at a
time, so peak extra memory is a few copies of the largest tensor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from spectrum_rl.models import load_causal_lm

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_WRAPPERS = frozenset({"model", "module", "base_model", "_orig_mod"})


@dataclass(frozen=True)
class SparsityReport:
    """Update sparsity summary. ``per_layer_density`` = fraction of elements changed per group
    (``layer <i>`` for names containing ``layers.<i>.``, otherwise the top-level module name);
    ``rank_ratio`` per 2-D matrix (empty when ranks were not computed); ``mean_rank_ratio`` is
    their mean over the matrices whose update is nonzero (an untouched matrix has no update rank
    to speak of; ``None`` when there is none)."""

    unchanged_fraction: float
    n_elements: int
    per_layer_density: dict[str, float]
    rank_ratio: dict[str, float]
    mean_rank_ratio: float | None
    tol: float

    def to_dict(self) -> dict:
        return asdict(self)


def _group(name: str) -> str:
    """``layer <i>`` for ``...layers.<i>....``, else the first name component after wrapper
    prefixes (``model.``, ``module.``, ``base_model.``, ``_orig_mod.``): ``model.norm.weight`` -> ``norm``."""
    if match := _LAYER.search(name):
        return f"layer {match.group(1)}"
    parts = name.split(".")
    i = 0
    while i < len(parts) - 1 and parts[i] in _WRAPPERS:
        i += 1
    return parts[i]


def _bf16_deltas(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, bf16(after) - bf16(before))`` in float32 for floating tensors present in both."""
    for name, b in before.items():
        a = after.get(name)
        if a is None or not (a.is_floating_point() and b.is_floating_point()):
            continue
        if a.shape != b.shape:
            raise ValueError(f"{name}: shape {tuple(b.shape)} before but {tuple(a.shape)} after")
        b = b.detach()
        yield name, a.detach().to(b.device, torch.bfloat16).float() - b.to(torch.bfloat16).float()


def changed_masks(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], tol: float = 1e-5
) -> dict[str, torch.Tensor]:
    """Boolean mask per compared tensor: True where ``|Δ| > tol`` (the element changed)."""
    return {name: delta.abs() > tol for name, delta in _bf16_deltas(before, after)}


def update_sparsity(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], tol: float = 1e-5, compute_rank: bool = True
) -> SparsityReport:
    """Sparsity of the update ``before -> after`` (module docstring). ``compute_rank=False`` skips
    the per-matrix SVDs, the expensive part on large models."""
    changed_total = n_total = 0
    groups: dict[str, list[int]] = {}  # group -> [changed, elements]
    ranks: dict[str, float] = {}
    for name, delta in _bf16_deltas(before, after):
        changed = int((delta.abs() > tol).sum())
        counts = groups.setdefault(_group(name), [0, 0])
        counts[0] += changed
        counts[1] += delta.numel()
        changed_total += changed
        n_total += delta.numel()
        if compute_rank and delta.ndim == 2 and min(delta.shape) > 0:
            ranks[name] = int(torch.linalg.matrix_rank(delta)) / min(delta.shape)
    if n_total == 0:
        raise ValueError("no floating-point elements in common between the two state dicts")
    updated = [r for r in ranks.values() if r > 0]
    return SparsityReport(
        unchanged_fraction=1.0 - changed_total / n_total,
        n_elements=n_total,
        per_layer_density={g: c / n for g, (c, n) in groups.items() if n},
        rank_ratio=ranks,
        mean_rank_ratio=sum(updated) / len(updated) if updated else None,
        tol=tol,
    )


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Cross-seed overlap ``|A ∩ B| / |A|`` of two changed-mask dicts, over all elements (a name
    missing from ``b`` contributes no overlap); 0.0 when A is empty (arXiv:2505.11711)."""
    size = inter = 0
    for name, mask in a.items():
        size += int(mask.sum())
        if name in b:
            other = b[name]
            if other.shape != mask.shape:
                raise ValueError(f"{name}: mask shapes differ, {tuple(mask.shape)} vs {tuple(other.shape)}")
            inter += int((mask & other.to(mask.device)).sum())
    return inter / size if size else 0.0


def model_state(name_or_path: str) -> dict:
    """Detached copies of a model's weights (a path, hub id or ``builtin:`` name)."""
    model, _ = load_causal_lm(name_or_path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def final_state(folder: Path) -> dict:
    """The weights of a saved Hugging Face model folder (a run's ``final/``)."""
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()
