"""`python3 thrashlab_runner.pyz STEP ...` (this file is also the zipapp's
top-level __main__.py) and `python3 -m thrashlab_runner STEP ...`."""
import sys

from thrashlab_runner.cli import main

sys.exit(main())
