"""thincam.metrics."""
