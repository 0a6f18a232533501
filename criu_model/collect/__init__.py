"""Collectors: one module per kernel interface. They know the kernel, not rendering."""
