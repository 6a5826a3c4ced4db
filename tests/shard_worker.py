"""Sharded-training checks, run under `torchrun --nproc_per_node N` (or plain python: one process).

    shard_worker.py train CONFIG OUT [--resume] [--probe]   train; report sharding, memory, greedy tokens
    shard_worker.py rows CONFIG OUT                          3 optimizer steps on fixed rows, split by rank

Each rank writes OUT/rank<r>.json; ``rows`` also writes OUT/weights.pt (the whole model, rank 0).
"""

import json
import sys
from pathlib import Path

import torch
from torch.distributed.fsdp import FSDPModule
from worker_exit import finish

from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains
from spectrum_rl.models import load_causal_lm
from spectrum_rl.trainer.batch import Row
from spectrum_rl.trainer.loop import Trainer
from spectrum_rl.trainer.rollout import sample
from spectrum_rl.trainer.sharding import full_state_dict, gathered, local_numel

mode, config_path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
config = load_config(config_path)
domains = build_domains(config, config_path.parent)
trainer = Trainer(config, domains, config.output_path, resume="--resume" in sys.argv)
rank, world = trainer.state.acc.process_index, trainer.state.acc.num_processes
params = [p for p in trainer.state.model.parameters()]
report = {
    "rank": rank,
    "world": world,
    "sharded": trainer.state.sharded,
    "fsdp_units": sum(isinstance(m, FSDPModule) for m in trainer.state.model.modules()),
    "local_params": local_numel(params),
    "total_params": sum(p.numel() for p in params),
    "base_local_params": local_numel(trainer.state.base.parameters()) if trainer.state.base is not None else None,
}

if mode == "train":
    # Greedy tokens of the sharded model (gathered) against the same weights unsharded, with the
    # static-cache decoder, the model's own cache, and Hugging Face generate.
    reference, tokenizer = load_causal_lm(config.model.name_or_path)
    prompts = [tokenizer(p)["input_ids"] for p in ("sort: 3 1 2", "reverse: abc", "sort: 9 8")]
    same = {}
    with gathered(trainer.state.model):
        for static in (True, False):
            kw = dict(max_new_tokens=8, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, temperature=0)
            a = sample(trainer.policy, prompts, static_cache=static, graphs=False, **kw)
            b = sample(reference, prompts, static_cache=static, graphs=False, **kw)
            same[f"static={static}"] = torch.equal(a.completion_ids, b.completion_ids)
        ids = torch.tensor([prompts[0]])
        gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        same["generate"] = torch.equal(trainer.policy.generate(ids, **gen), reference.generate(ids, **gen))
    report["greedy_equal"] = same
    trainer.train()
    report["optimizer_local_state"] = local_numel(
        v for s in trainer.state.optimizer.state.values() for k, v in s.items() if k != "step"
    )
    report["eval"] = trainer.evaluate()
    if "--probe" in sys.argv:  # `order`'s transfer probes: restore weights and optimizer between domains
        from spectrum_rl.analysis.probe import probe_transfer

        probe_transfer(config, domains, steps=1)  # writes transfer.json to the run folder
elif mode == "rows":
    # The same global batch on any number of processes: process r takes every world-th row.
    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(12):
        prompt = torch.randint(3, 200, (4 + i % 3,), generator=gen).tolist()
        completion = torch.randint(3, 200, (2 + i % 5,), generator=gen).tolist()
        role = "sft" if i % 4 == 0 else "rl"  # rank 0 of 2 gets 3 SFT rows, rank 1 none: padding needed
        rows.append(Row(prompt, completion, role, "sorting", 1.0 - 0.05 * i, (-1.0) ** i * (0.5 + 0.1 * i)))
    for _ in range(3):
        trainer.learner.update(rows[rank::world])
    weights = full_state_dict(trainer.state.model) if trainer.state.sharded else trainer.policy.state_dict()
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in weights.items()}, out / "weights.pt")
(out / f"rank{rank}.json").write_text(json.dumps(report))
finish()
