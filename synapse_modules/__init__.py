"""Hauspost's Synapse modules: company policy enforced inside Synapse, failing closed."""
