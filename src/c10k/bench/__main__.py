"""``python -m c10k.bench`` runs the bench without the ``c10k`` command (same arguments)."""

import sys

from c10k.bench.cli import main

sys.exit(main())
