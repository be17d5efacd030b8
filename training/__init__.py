"""Decentralized training on non-IID partitions (docs/reference.md §3-5)."""

from training.norm import convert_bn_to_gn

__all__ = ["convert_bn_to_gn"]
