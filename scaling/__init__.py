"""Scaling-law workbench: train transformer families, track runs, fit scaling laws, report."""

__version__ = "0.1.0"
