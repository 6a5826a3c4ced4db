"""Mixture policies: given the signals (numbers only), which domains to train and how much.

Each policy returns a Decision (mixture summing to 1, a reason, optional mu raises, and optionally
the difficulty levels of domains with a range knob; without those the Planner's difficulty mode
picks them). Hand-set ones (joint, sequential, the oracles): ``fixed.py``; phases from transfer
(bwt): ``ordered.py``; bandits over learnability (learnability, sec, dump, thompson, transfer):
``bandits.py``; ours (adaptive): ``adaptive.py``; what they share: ``base.py``.
"""

# isort: off
from spectrum_rl.scheduler.policies.base import (
    POLICIES,
    Decision,
    Policy,
    PolicyParams,
    SchedulerConfig,
    View,
)
from spectrum_rl.scheduler.policies import fixed, ordered, bandits, adaptive  # noqa: F401  (they register)

# isort: on

__all__ = ["POLICIES", "Decision", "Policy", "PolicyParams", "SchedulerConfig", "View"]
