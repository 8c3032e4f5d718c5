"""Reproduces the image model artifacts (models/image/artifact) from their upstream sources."""
