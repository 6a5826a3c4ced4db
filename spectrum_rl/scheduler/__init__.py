"""The curriculum scheduler: decides, every step, the domain mixture and how much SFT each domain
gets (a StepPlan), from numbers the trainer reports (StepSignals) and held-out scores. Pure Python
(numpy, networkx): no tensors, no model.

- step.py: StepPlan and StepSignals, the messages between scheduler and trainer.
- plan.py: the Planner (policy + mu rules + signals).
- policies.py: mixture policies (registry ``POLICIES``) and the `scheduler:` section.
- blend.py: mu schedules (registry ``MU_SCHEDULES``), the gate, per-layer mu, row weights, and
  the `training.sft:` section.
- signals.py: entropy monitor, learnability, online transfer, gradient alignment.
- graph.py, order.py, continual.py: the task graph, the best order, ACC/BWT/FWT.
"""

from spectrum_rl.scheduler.blend import MU_SCHEDULES, MuRule, MuSchedule, SFTConfig
from spectrum_rl.scheduler.continual import continual_metrics, normalised_transfer
from spectrum_rl.scheduler.order import OrderResult, best_order
from spectrum_rl.scheduler.plan import Planner, load_transfer
from spectrum_rl.scheduler.policies import POLICIES, Policy, SchedulerConfig
from spectrum_rl.scheduler.step import DomainSignals, GroupOutcome, StepPlan, StepSignals

__all__ = [
    "MU_SCHEDULES",
    "POLICIES",
    "DomainSignals",
    "GroupOutcome",
    "MuRule",
    "MuSchedule",
    "OrderResult",
    "Planner",
    "Policy",
    "SFTConfig",
    "SchedulerConfig",
    "StepPlan",
    "StepSignals",
    "best_order",
    "continual_metrics",
    "load_transfer",
    "normalised_transfer",
]
