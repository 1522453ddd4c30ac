"""Ours, not upstream: keep the vendored ptychodus tests out of the default collection.

They are run, in a separate pytest process rooted here, by
``tests/ptychodus/test_ptychodus_own_tests.py``, which sets
``PTYCHOPINN_RUN_UPSTREAM_PTYCHODUS_TESTS=1``.
"""

import os

if os.environ.get("PTYCHOPINN_RUN_UPSTREAM_PTYCHODUS_TESTS") == "1":
    collect_ignore_glob: list[str] = []
else:
    collect_ignore_glob = ["test_*.py", "subprocess_child_fixtures.py"]
