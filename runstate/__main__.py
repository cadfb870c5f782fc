"""``python -m runstate ...`` is the ``runstate`` command."""

from ._cli import main

raise SystemExit(main())
