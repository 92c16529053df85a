"""`python -m serving.server`: see `serving.server.command`."""

import sys

from serving.server.command import main

sys.exit(main())
