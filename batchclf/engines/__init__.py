"""Classify engines: how prepared files become labelled rows (the local worker pool)."""
