"""Persistence writer: every signal, order, order result, alert and health event into PostgreSQL."""
