"""MedVault: an open-source medical image archive with deep-learning analysis."""

__version__ = "0.1.0"
