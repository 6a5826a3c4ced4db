"""Run under `torchrun --nproc_per_node 2`: trains briefly and writes what this rank did."""

import hashlib
import json
import sys
from pathlib import Path

from worker_exit import finish

import spectrum_rl.trainer.experience as experience
import spectrum_rl.trainer.loop as loop
from spectrum_rl.config import load_config
from spectrum_rl.domains import build_domains

config_path, out = Path(sys.argv[1]), Path(sys.argv[2])
sampled = []
real_sample = experience.sample


def counting_sample(model, prompts, **kw):
    sampled.append(len(prompts))
    return real_sample(model, prompts, **kw)


experience.sample = counting_sample
config = load_config(config_path)
trainer = loop.Trainer(config, build_domains(config, config_path.parent), config.output_path)
trainer.train()
digest = hashlib.sha256()
for name, tensor in sorted(trainer.policy.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().numpy().tobytes())
rank = trainer.state.acc.process_index
(out / f"rank{rank}.json").write_text(
    json.dumps(
        {"rank": rank, "world": trainer.state.acc.num_processes, "sampled": sampled, "weights": digest.hexdigest()}
    )
)
finish()
