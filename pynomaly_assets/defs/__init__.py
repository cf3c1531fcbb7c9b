"""Dagster definitions, one module per pipeline stage; each stage builds its assets per feed."""
