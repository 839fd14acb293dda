"""`python -m netrun ...`: the `netrun` command."""

import sys

from .cli import main

sys.exit(main())
