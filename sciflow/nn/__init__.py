"""Shared neural-network layers. Imports nothing else of sciflow."""

from sciflow.nn.mlp import MLP, activation

__all__ = ["MLP", "activation"]
