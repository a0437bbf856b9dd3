"""``python -m squirrel``: the `squirrel` command."""

import sys

from squirrel.cli import main

sys.exit(main())
