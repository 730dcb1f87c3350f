import sys

from ratag_xr.cli import main

sys.exit(main())
