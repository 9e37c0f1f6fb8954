"""The execution service: turns approved ``order`` events into fills, exactly once per ``client_id``.

``service`` is the loop (``cdb run execution``), ``ledger`` the PostgreSQL book
(orders, trades, positions, balances), ``accounting`` the pure position and cash
arithmetic, ``lock`` the single-writer Redis lock, ``reconcile`` the start-up
check of orders left in flight, and ``resolve`` the command a person uses to
settle an order the exchange does not know.
"""
