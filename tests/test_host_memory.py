"""Reuse of freed host memory (cpu/host_memory.py): measured in page faults, in a fresh process
each way (the setting is process-wide)."""

import subprocess
import sys
import textwrap

import pytest

ROUNDS = textwrap.dedent("""
    import resource, sys, torch
    from spectrum_rl.cpu.host_memory import reuse_freed_memory
    if sys.argv[1] == "on":
        assert reuse_freed_memory()
    def one_round():  # what a training step does: allocate many activations, free them all
        xs = [torch.ones(1 << 20) for _ in range(40)]  # 40 x 4 MiB
        del xs
    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        one_round()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    plain, reused = faults("off"), faults("on")
    pages = 5 * 40 * (4 << 20) // 4096  # every round's pages, had each been faulted in again
    # glibc's defaults hand (some of) it back and fault it in again: 20-100% of the pages, measured
    assert plain > pages // 10
    assert reused < pages // 10  # kept: the next round reuses the pages (0.5-3.5% faulted, measured)
