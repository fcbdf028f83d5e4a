"""thincam.optics."""
