"""``python -m spectrum_rl`` (also what ``torchrun ... -m spectrum_rl`` runs)."""

import sys

from spectrum_rl.cli import main

sys.exit(main())
