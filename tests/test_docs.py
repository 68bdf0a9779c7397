"""The code in README.md and docs/*.md runs (each file in a fresh interpreter)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _code(path: pathlib.Path) -> str:
    blocks = [b for b in BLOCK.findall(path.read_text()) if "# doc: no-run" not in b]
    return "\n\n".join(blocks)


@pytest.mark.parametrize("path", [p for p in DOCS if _code(p)], ids=lambda p: p.name)
def test_doc_code_runs(path, tmp_path):
    script = tmp_path / f"{path.stem}_doc.py"
    script.write_text(_code(path))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{path.name} code failed:\n{result.stderr[-3000:]}"
