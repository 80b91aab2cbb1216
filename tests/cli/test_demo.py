"""`onnxforge demo` exports in a child process, so the process that answers never holds torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from pathlib import Path
from onnxforge.cli.demo import ExportFailed, export_in_child
export_in_child("tiny:llama", Path(sys.argv[1]))
try:
    export_in_child("no-such-model", Path(sys.argv[1]) / "other")
    failed = None
except ExportFailed as error:
    failed = error.exit_status
print(json.dumps({"torch": "torch" in sys.modules, "failed": failed}))
"""


def test_the_demo_exports_in_a_child_process_and_keeps_its_exit_status(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "failed": 2}
    assert (folder / "model.onnx").is_file() and not (folder / "other").exists()
