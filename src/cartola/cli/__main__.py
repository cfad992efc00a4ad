"""``python -m cartola.cli``."""
import sys

from cartola.cli.app import main

sys.exit(main())
