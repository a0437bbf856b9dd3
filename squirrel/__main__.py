"""``python -m squirrel``: the `squirrel` command."""

import sys

from squirrel.cli import main

__all__: list[str] = []

sys.exit(main())
