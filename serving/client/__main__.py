"""`python -m serving.client`: see `serving.client.command`."""

import sys

from serving.client.command import main

sys.exit(main())
