"""Heron's HTTP edge (FastAPI). No scoring logic lives here."""
