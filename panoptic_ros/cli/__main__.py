"""``python -m panoptic_ros.cli``: the ``panoptic-ros`` command."""

import sys

from panoptic_ros.cli import main

sys.exit(main())
