"""Hyperparameters of `fastenv train` as data: one TOML file per algorithm."""
