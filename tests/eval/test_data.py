"""The shipped data files are byte-identical to the ones listed in SHA256SUMS."""

from __future__ import annotations

import hashlib

from onnxforge.data import DATA_DIR, FILES


def test_shipped_data_matches_its_checksums() -> None:
    sums = dict(reversed(line.split()) for line in (DATA_DIR / "SHA256SUMS").read_text().splitlines() if line)
    assert set(sums) == set(FILES.values())
    for relative, digest in sums.items():
        assert hashlib.sha256((DATA_DIR / relative).read_bytes()).hexdigest() == digest, relative
