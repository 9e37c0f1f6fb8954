"""``python -m cdb`` is ``cdb``."""

from cdb.cli import main

raise SystemExit(main())
