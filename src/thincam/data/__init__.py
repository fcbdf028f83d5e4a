"""thincam.data."""
