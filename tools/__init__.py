"""The llamba command line."""
