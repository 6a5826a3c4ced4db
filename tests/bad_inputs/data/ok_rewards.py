def score(completions, **kwargs):
    return [0.0 for _ in completions]


def per_completion(completion, example):  # one completion at a time: not how a reward is called
    return 0.0
