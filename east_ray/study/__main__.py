"""`python -m east_ray.study NAME [options]`; see `east_ray.study.cli`."""

import sys

from east_ray.study.cli import main

sys.exit(main())
