"""`python -m llamba …` runs the command line."""

import sys

from llamba.tools.cli import main

sys.exit(main())
