import sys

from c10k.cli import main

sys.exit(main())
