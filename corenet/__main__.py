"""``python -m corenet``: the same as the ``corenet`` command."""

import sys

from .cli import main

sys.exit(main())
