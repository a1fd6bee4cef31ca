"""Measurements: energy, memory, parameter and MAC counts."""
