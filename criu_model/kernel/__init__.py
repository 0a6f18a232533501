"""Thin ctypes wrappers around the syscalls and ioctls Python does not expose."""
