"""Importable fixtures for the DSL tests: node functions, factories and port type classes."""
