"""spectrum-rl: curriculum-scheduled post-training on a continuous SFT<->RL spectrum."""

__version__ = "0.1.0"
