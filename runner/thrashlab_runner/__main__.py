"""`python3 RUNNER STEP ...`, RUNNER the zipapp or the directory it is unpacked
into on a machine (this file is also their top-level __main__.py), and
`python3 -m thrashlab_runner STEP ...`."""
import sys

from thrashlab_runner.cli import main

sys.exit(main())
