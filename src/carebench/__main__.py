"""`python -m carebench`."""

import sys

from carebench.launcher import main

sys.exit(main())
