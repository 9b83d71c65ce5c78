"""Reproduction of "Do Efficient Transformers Really Save Computation?" (Yang et al., ICML 2024)."""

__version__ = "0.1.0"
