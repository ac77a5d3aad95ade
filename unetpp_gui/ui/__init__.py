"""Qt widgets. Nothing outside this package imports it."""
