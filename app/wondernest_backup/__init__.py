"""Backups that are proven by restoring them: run, verify, list, prune, restore, serve."""
