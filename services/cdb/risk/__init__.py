"""The risk manager: turns signals into sized orders, or into a reasoned refusal."""
