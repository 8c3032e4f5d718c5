"""Scorers and their registry."""
