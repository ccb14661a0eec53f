"""`python -m carebench`."""

import sys

from carebench.cli import main

sys.exit(main())
