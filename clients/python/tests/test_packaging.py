"""Licence and installation from the git repository, as the README says."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
REPO = PROJECT.parent.parent


def test_licence_texts_are_the_repository_ones() -> None:
    for name in ("LICENSE-MIT", "LICENSE-APACHE"):
        assert (PROJECT / name).read_bytes() == (REPO / name).read_bytes(), name


def test_wheel_built_from_the_git_repository_carries_the_licence(tmp_path: Path) -> None:
    # The README's `pip install "git+https://...#subdirectory=clients/python"`,
    # with this checkout's committed HEAD standing in for the public URL.
    url = f"git+file://{REPO}#subdirectory=clients/python"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("occupancy_client-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(zf.read(metadata_name))
    assert metadata["License-Expression"] == "MIT OR Apache-2.0"
    assert sorted(metadata.get_all("License-File") or []) == ["LICENSE-APACHE", "LICENSE-MIT"]
    assert any(n.endswith(".dist-info/licenses/LICENSE-MIT") for n in names), names
    assert any(n.endswith(".dist-info/licenses/LICENSE-APACHE") for n in names), names
    assert "occupancy_client/testing.py" in names
    assert "occupancy_client/py.typed" in names
