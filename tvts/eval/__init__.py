"""Downstream evaluation: views of a video (views), frozen features and their cache (features),
metrics, the linear probe (linear) and the `eval:` config parts (config)."""
