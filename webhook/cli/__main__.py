"""`python -m webhook.cli`: the podmedic command."""

import sys

from webhook.cli import main

sys.exit(main())
