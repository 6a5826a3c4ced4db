"""The scheduler inside other trainers: ``spectrum_rl.integrations.trl`` (TRL's GRPOTrainer)."""
