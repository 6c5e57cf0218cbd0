"""Models of the dr app."""
