"""PostgreSQL: the schema (numbered migrations under ``migrations/``) and connections."""
