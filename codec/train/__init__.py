"""Offline tools that make codec/weights: nothing in the runtime codec imports this package.

- `trainer`: `pilc train` (PyTorch VQ-VAE on residual images; `python -m codec.train.trainer`)
- `export`: the trained float net -> the shipped integer weights, tables fitted on the way
- `fit_tables`: the pixel model's tables and priors (`python -m codec.train.fit_tables`)
- `data`: the training images and scale range all three share

Nothing is imported here, so `python -m codec.train.fit_tables` runs the module once.
"""
