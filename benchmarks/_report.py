"""Writing a benchmark's report: atomically, so that an interrupted run leaves the old file whole."""

from __future__ import annotations

import os


def write_markdown(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
