"""Reward components and the per-domain hybrid reward (see ``specs`` for the YAML schema)."""

from spectrum_rl.rewards.base import REWARDS
from spectrum_rl.rewards.hybrid import HybridReward, RewardResult, build_hybrid
from spectrum_rl.rewards.specs import RewardComponentSpec
from spectrum_rl.rewards.text import extract_answer

__all__ = ["REWARDS", "HybridReward", "RewardComponentSpec", "RewardResult", "build_hybrid", "extract_answer"]
