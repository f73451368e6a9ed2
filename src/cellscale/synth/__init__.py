"""Seeded synthetic microscopy with known ground truth."""
