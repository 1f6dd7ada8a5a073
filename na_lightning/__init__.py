"""Spiking neural networks trained with Neighborhood Aggregation, as Lightning modules."""

__version__ = "0.1.0"
