"""``python -m spectrum_rl`` (also what ``torchrun ... -m spectrum_rl`` runs)."""

from spectrum_rl.cli import entry

entry()
