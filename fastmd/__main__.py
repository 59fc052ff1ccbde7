"""``python -m fastmd``: the same as the ``fastmd`` command."""

import sys

from fastmd.cli import main

sys.exit(main())
