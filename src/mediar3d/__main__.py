import sys

from mediar3d.cli.main import main

sys.exit(main())
