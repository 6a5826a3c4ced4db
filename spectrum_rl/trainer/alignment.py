"""Per-domain gradient alignment for the scheduler's transfer signal (TAC, arXiv:2606.25178).

During a step, each domain's RL loss is differentiated with respect to a small parameter subset
at the top of the network — the last decoder block's output projections (attention ``o_proj``,
MLP ``down_proj``), the final norm, and the output embedding unless it is tied to the input one —
reusing the step's forward, so autograd only walks back through the head and those projections.
Each domain's gradient is compressed with a CountSketch
(Charikar et al. 2002): coordinate k of the gradient is added, with a random sign s_k, to bucket
h_k of a ``dim``-vector. Inner products, hence cosines, are preserved in expectation. The
scheduler receives only the cosine matrix.
"""

from __future__ import annotations

import re

import torch

_OUTPUT_PROJ = r"(o_proj|down_proj|out_proj|c_proj|dense_4h_to_h)"


class GradientSketch:
    def __init__(self, model: torch.nn.Module, dim: int = 4096, seed: int = 0) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        layers = [int(m.group(1)) for n, _ in named if (m := re.search(r"layers\.(\d+)\.", n))]
        last = f"layers.{max(layers)}." if layers else None
        top = [p for n, p in named if last and last in n and re.search(_OUTPUT_PROJ, n)]
        if not top:  # unknown block layout: the whole last block
            top = [p for n, p in named if last and last in n]
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        inputs = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        tied = {id(p) for p in inputs.parameters()} if inputs is not None else set()
        head_params = [
            p for p in (head.parameters() if head is not None else []) if p.requires_grad and id(p) not in tied
        ]
        norms = [p for n, p in named if re.search(r"(^|\.)norm\.weight$", n)]
        self.params = top + norms + head_params
        g = torch.Generator().manual_seed(seed)
        self.buckets = [torch.randint(0, dim, (p.numel(),), generator=g) for p in self.params]
        self.signs = [torch.randint(0, 2, (p.numel(),), generator=g).float() * 2 - 1 for p in self.params]
        self.dim = dim

    def sketch(self, loss: torch.Tensor) -> torch.Tensor:
        """CountSketch [dim] of d loss / d subset (the graph is kept for the step's own backward)."""
        grads = torch.autograd.grad(loss, self.params, retain_graph=True, allow_unused=True)
        out = torch.zeros(self.dim)
        for grad, bucket, sign in zip(grads, self.buckets, self.signs):
            if grad is not None:
                out.index_add_(0, bucket, grad.detach().float().flatten().cpu() * sign)
        return out


def cosine_matrix(sketches: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    names = list(sketches)
    unit = {n: v / v.norm().clamp(min=1e-12) for n, v in sketches.items()}
    return {a: {b: round(float(unit[a] @ unit[b]), 6) for b in names} for a in names}
