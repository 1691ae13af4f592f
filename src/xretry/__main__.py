"""``python -m xretry``: the same as the ``xretry`` command."""

import sys

from ._cli import main

sys.exit(main())
