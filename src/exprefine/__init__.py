"""exprefine: refine machine-learning interatomic potentials against experiment with DiffTRe."""

__version__ = "0.1.0"
