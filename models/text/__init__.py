"""Heron's text model: backbone + head definition and the artifact format."""
