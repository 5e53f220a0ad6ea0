"""sciflow.training."""
