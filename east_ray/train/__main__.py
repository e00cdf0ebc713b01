"""`python -m east_ray.train SPEC --cell ID`; see `east_ray.train.cli`."""

import sys

from east_ray.train.cli import main

sys.exit(main())
