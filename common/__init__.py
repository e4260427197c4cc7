"""Shared pieces of gridless: search spaces, study specs, checkpoints, storage models."""
