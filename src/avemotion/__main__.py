import sys

from avemotion.cli import main

sys.exit(main())
