"""The dashboard: see the bot, understand each trade, stop it (``cdb run dashboard``)."""
