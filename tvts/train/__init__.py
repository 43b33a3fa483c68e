"""Pretraining: data pipeline, distributed setup, checkpoints and the training loop."""
