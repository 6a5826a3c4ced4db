"""The math of the RL objective, below the config (which validates names against its registries):
policy losses (``losses.py``, TRL's ``loss_type`` family) and advantage estimators (``advantages.py``)."""
