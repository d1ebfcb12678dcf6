"""`python -m bridge.entrypoints.customs_sim`: serve the simulator (see app.main)."""

import sys

from bridge.entrypoints.customs_sim.app import main

sys.exit(main())
