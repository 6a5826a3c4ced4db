"""The curriculum scheduler: task graph, signals, policies, StepPlan, and the order query.

Python API of `spectrum-rl order`::

    from spectrum_rl.scheduler import probe_transfer, recommend_order
    record = probe_transfer(config, domains, steps=10)
    result = recommend_order(config, record)   # {"order", "phases", "transfer", "rationale", ...}
"""
from spectrum_rl.scheduler.continual import continual_metrics, normalised_transfer
from spectrum_rl.scheduler.order import OrderResult, best_order
from spectrum_rl.scheduler.plan import Planner, StepPlan
from spectrum_rl.scheduler.probe import probe_transfer, recommend_order, transfer_from_run

__all__ = ["OrderResult", "Planner", "StepPlan", "best_order", "continual_metrics", "normalised_transfer",
           "probe_transfer", "recommend_order", "transfer_from_run"]
