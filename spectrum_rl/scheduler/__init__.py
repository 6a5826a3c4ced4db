"""The curriculum scheduler: decides, every step, the domain mixture and how much SFT each domain
gets (a StepPlan), from numbers the trainer reports (StepSignals) and held-out scores. Pure Python
(numpy, networkx): no tensors, no model.

- step.py: StepPlan (one DomainPlan per domain) and StepSignals, the messages between scheduler and trainer.
- plan.py: the Planner (policy + mu schedules + signals).
- policies/: mixture policies (registry ``POLICIES``) and the `scheduler:` section.
- mu.py: mu schedules (registry ``MU_SCHEDULES``), each with its parameters.
- blend.py: rows per domain, and every row's weight once rollouts are scored (``weigh``: the gate,
  per-layer mu, the learning-rate blend); the `training.sft:` section.
- shares.py: normalised weights and whole items from shares (``Credit``).
- signals.py: entropy monitor, learnability, online transfer, gradient alignment.
- graph.py, order.py, continual.py: the domain graph, the best order, ACC/BWT/FWT.
"""

from spectrum_rl.scheduler.blend import SFTConfig, StepWeights, weigh
from spectrum_rl.scheduler.continual import continual_metrics, normalised_transfer
from spectrum_rl.scheduler.mu import MU_SCHEDULES, MuParams, MuSchedule
from spectrum_rl.scheduler.order import OrderResult, best_order
from spectrum_rl.scheduler.plan import Planner, load_transfer
from spectrum_rl.scheduler.policies import POLICIES, Policy, PolicyParams, SchedulerConfig
from spectrum_rl.scheduler.step import DomainPlan, DomainSignals, GroupOutcome, StepPlan, StepSignals

__all__ = [
    "MU_SCHEDULES",
    "POLICIES",
    "DomainPlan",
    "DomainSignals",
    "GroupOutcome",
    "MuParams",
    "MuSchedule",
    "OrderResult",
    "Planner",
    "Policy",
    "PolicyParams",
    "SFTConfig",
    "SchedulerConfig",
    "StepPlan",
    "StepSignals",
    "StepWeights",
    "best_order",
    "continual_metrics",
    "load_transfer",
    "normalised_transfer",
    "weigh",
]
