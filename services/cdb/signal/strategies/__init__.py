"""Strategy modules, one per strategy, each with ``build(settings) -> Strategy``.

Adding a strategy is adding a module here and naming it in ``SIGNAL_STRATEGIES``;
the engine loop does not change.
"""
