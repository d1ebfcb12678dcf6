"""`python -m bridge.entrypoints.console`: serve the console (options of `elbridge console
serve`, settings from the environment)."""

import sys

from bridge.entrypoints.cli_console import main

sys.exit(main())
