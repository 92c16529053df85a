"""`python -m serving.export`: see `serving.export.command`."""

import sys

from serving.export.command import main

sys.exit(main())
