"""Per-source transforms a spec cannot express (pure DataFrame → DataFrame)."""
