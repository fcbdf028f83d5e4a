"""thincam.models."""
