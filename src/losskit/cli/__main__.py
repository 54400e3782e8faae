"""``python -m losskit.cli``: the ``losskit`` command without the console script."""

import sys

from . import main

sys.exit(main())
