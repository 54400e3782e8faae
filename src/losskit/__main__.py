"""``python -m losskit``: the ``losskit`` command without the console script (as ``python -m losskit.cli``)."""

import sys

from .cli import main

sys.exit(main())
