"""``python -m replicate.report [results_dir]``: the figures and index.html from results/ alone."""

import sys

from . import main

sys.exit(main())
