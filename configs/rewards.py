"""Example user reward for configs/local_jsonl.yaml (TRL-style signature)."""


def short_answer(prompts, completions, **columns):
    """1.0 for answers of at most three words, decaying after; columns hold the row's fields."""
    return [1.0 if len(c.split()) <= 3 else 3.0 / len(c.split()) for c in completions]
