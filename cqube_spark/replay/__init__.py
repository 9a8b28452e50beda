"""Data replay (admin deletions by source and period), undo, and retention (see docs/replay.md)."""
