"""Notifier: every alert logged, WARNING and CRITICAL pushed to subscribed browsers (Web Push)."""
