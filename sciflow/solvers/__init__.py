"""sciflow.solvers."""
