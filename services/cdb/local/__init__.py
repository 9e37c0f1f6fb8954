"""``cdb up`` and ``cdb status``: the whole pipeline on one machine, and a look at it."""
