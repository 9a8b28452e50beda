"""Small job models that compose library stages (the bigger ones live in their own packages)."""
