"""Text-model training, calibration, evaluation and model-card generation."""
