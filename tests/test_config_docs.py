"""docs/config.md is generated from the schemas (`python -m fpkit.config --docs -o docs/config.md`)."""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_config_docs_are_up_to_date():
    # a fresh process: the generated text holds exactly the schemas fpkit registers itself
    text = subprocess.run([sys.executable, "-m", "fpkit.config", "--docs"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert DOCS.read_text() == text, "docs/config.md is stale: run python -m fpkit.config --docs -o docs/config.md"
