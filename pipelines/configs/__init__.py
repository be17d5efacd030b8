"""Shipped study configs (TOML) for `python -m pipelines.run_study`."""
