"""How a test's torchrun worker ends, as the CLI's ``entry`` does: close the process group, then exit
without the interpreter's teardown, in which PyTorch's CPU collective stack sometimes aborts a
finished process ("terminate called without an active exception"; spectrum_rl/cli.py, entry)."""

import os
import sys

import torch


def finish() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
