"""sciflow.data.pdes."""
