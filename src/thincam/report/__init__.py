"""thincam.report."""
