"""spectrum-rl: curriculum-scheduled post-training on a continuous SFT<->RL spectrum.

The public names (``__all__``) are those of ``spectrum_rl.api`` (docs/api.md), loaded on first
use so that ``import spectrum_rl`` and the command line stay quick; everything else is internal.
"""

__version__ = "0.1.0"

__all__ = [
    "AdvantageEstimator",
    "AdvantageParams",
    "Config",
    "Decision",
    "Domain",
    "Example",
    "LossParams",
    "MuParams",
    "MuSchedule",
    "OrderRecommendation",
    "Outcome",
    "Policy",
    "PolicyLoss",
    "PolicyParams",
    "PredictedGain",
    "RewardComponent",
    "RewardSpec",
    "RowSource",
    "RunResult",
    "Scheduler",
    "Scores",
    "SourceContext",
    "SourceSpec",
    "StepPlan",
    "Surrogate",
    "View",
    "builtin_model",
    "load_config",
    "recommend_order",
    "register_advantage",
    "register_loss",
    "register_mu_schedule",
    "register_policy",
    "register_reward",
    "register_source",
    "train",
]


def __getattr__(name: str):
    if name in __all__:
        from spectrum_rl import api

        return getattr(api, name)
    raise AttributeError(f"module 'spectrum_rl' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
