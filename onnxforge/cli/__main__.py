"""`python -m onnxforge.cli ...`, the same as the `onnxforge` console script."""

import sys

from onnxforge.cli.main import main

sys.exit(main())
