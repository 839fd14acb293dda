"""Example pipelines shipped with netrun."""
