"""Run under `torchrun --nproc_per_node 2`: a ScheduledGRPOTrainer for 6 steps; writes the plans this
rank drew, the domains its reward function saw and what its scheduler learned."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import spectrum_rl as srl  # noqa: E402
from spectrum_rl.integrations.trl import ScheduledGRPOTrainer  # noqa: E402
from spectrum_rl.models import load_tokenizer  # noqa: E402
from tests.test_trl_integration import _args, _dataset  # noqa: E402
from tests.worker_exit import finish  # noqa: E402

model, out = sys.argv[1], Path(sys.argv[2])
seen = []


def reward(completions, domain, **kwargs):
    seen.append(list(domain))
    return [float(len(c) % 2) if d == "math" else float(d == "code") for c, d in zip(completions, domain)]


domains = [srl.Domain("math"), srl.Domain("code"), srl.Domain("poems")]
scheduler = srl.Scheduler(domains, prompts_per_step=4, policy="adaptive")
trainer = ScheduledGRPOTrainer(
    model=model,
    reward_funcs=reward,
    args=_args(out, 6, processes=2),
    train_dataset=_dataset(),
    processing_class=load_tokenizer(model),
    scheduler=scheduler,
)
trainer.train()
state = {"plans": [p.prompts for p in trainer.sampler.plans], "seen": seen, "scheduler": scheduler.state_dict()}
(out / f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps(state))
finish()
