"""Formatting only: text (rich) and JSON views of loaded snapshots."""
