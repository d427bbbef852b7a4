"""The layer rule (README.md, Architecture and layout): scripts/check-layers.sh passes on the tree, and fails on
an upward import, a sideways one, an upward dependency in Package.swift, and a target it does not know. No
server: it reads files only."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/check-layers.sh"


@pytest.fixture
def tree(tmp_path):
    """A copy of what the check reads: the targets' Swift files, Package.swift and the script."""
    for top in ("Sources", "Tests"):
        for file in (REPO / top).rglob("*.swift"):
            if top == "Tests" and not file.relative_to(REPO / top).parts[0].endswith("Tests"):
                continue
            target = tmp_path / file.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    (tmp_path / "Sources" / "CHiredis").mkdir(exist_ok=True)
    shutil.copyfile(REPO / "Package.swift", tmp_path / "Package.swift")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / SCRIPT, tmp_path / SCRIPT)
    return tmp_path


def check(root):
    return subprocess.run(["bash", str(root / SCRIPT)], capture_output=True, text=True, timeout=60)


def prepend(file, line):
    file.write_text(line + "\n" + file.read_text())


def test_the_tree_follows_the_layer_rule():
    result = check(REPO)
    assert result.returncode == 0, result.stderr
    assert "layer rule holds" in result.stdout


def test_the_copy_passes_before_it_is_broken(tree):
    result = check(tree)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("target, module", [
    ("EngineIO", "SocketIO"),      # upward
    ("SocketIO", "Signaling"),     # upward
    ("SocketIO", "Adapter"),       # upward
    ("Signaling", "Adapter"),      # sideways
    ("Adapter", "Signaling"),      # sideways
    ("Signaling", "Node"),         # upward
])
def test_an_upward_or_sideways_import_fails(tree, target, module):
    file = sorted((tree / "Sources" / target).rglob("*.swift"))[0]
    prepend(file, f"@testable import {module}")
    result = check(tree)
    assert result.returncode == 1
    assert f"{target} imports {module}" in result.stderr


def test_a_test_target_imports_only_its_layer_and_below(tree):
    file = sorted((tree / "Tests" / "SocketIOTests").glob("*.swift"))[0]
    prepend(file, "import Signaling")
    result = check(tree)
    assert result.returncode == 1
    assert "SocketIOTests imports Signaling" in result.stderr


def test_an_upward_dependency_in_the_package_fails(tree):
    package = tree / "Package.swift"
    text = package.read_text()
    needle = '            name: "SocketIO",\n            dependencies: [\n                "EngineIO",\n'
    assert needle in text
    package.write_text(text.replace(needle, needle + '                "Signaling",\n'))
    result = check(tree)
    assert result.returncode == 1
    assert "dependencies of SocketIO" in result.stderr


def test_an_unknown_target_fails(tree):
    (tree / "Sources" / "Extra").mkdir()
    (tree / "Sources" / "Extra" / "Extra.swift").write_text("import Node\n")
    result = check(tree)
    assert result.returncode == 1
    assert "Sources/Extra/ is not in" in result.stderr
