"""The SFT<->RL study (`spectrum-rl study`, `spectrum-rl gates`): its arms and budget, the runner,
the family of paired comparisons, the claims C1-C5 and the curriculum goal, the report, the
validity gates of its world, and the study numbers the docs quote (``docs_data``). It drives the
trainer and reads run diagnostics from ``analysis/``; nothing below it imports it.
"""
