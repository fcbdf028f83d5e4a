"""thincam.solvers."""
