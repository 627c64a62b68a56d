"""Hauspost provisioner: the `hauspost` CLI and service for IT admins and HR."""

__version__ = "0.1.0"
