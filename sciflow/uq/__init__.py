"""sciflow.uq."""
