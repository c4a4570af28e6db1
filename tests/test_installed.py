"""The installed package, not the source tree: every subpackage is shipped and the CLI works.

pyproject lists the packages to install; a subpackage it misses works from the checkout (and so
in every other test) but is absent from `pip install .`. Here the project is installed into a
folder of its own and used from outside the checkout, with the checkout off `sys.path`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import make_photo

ROOT = Path(__file__).parent.parent
PACKAGES = ("search", "indexes")  # what pyproject's packages.find includes
PHOTOS = 4


def _ignored(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.startswith(".") or n.endswith(".egg-info")}


def _source_modules() -> dict[str, list[str]]:
    """Package folder (relative, '/'-separated) -> its .py files, walked from the checkout.

    Every folder holding .py files counts: pyproject's packages.find also installs folders
    without __init__.py (namespace packages), so a new subpackage is covered either way.
    """
    found: dict[str, list[str]] = {}
    for top in PACKAGES:
        for folder, dirs, files in os.walk(ROOT / top):
            dirs[:] = sorted(d for d in dirs if d not in _ignored(folder, dirs))
            modules = sorted(f for f in files if f.endswith(".py"))
            if modules:
                found[Path(folder).relative_to(ROOT).as_posix()] = modules
    return found


def _module_names(modules: dict[str, list[str]]) -> list[str]:
    names = []
    for folder, files in modules.items():
        package = folder.replace("/", ".")
        names += [package if f == "__init__.py" else f"{package}.{f[:-3]}" for f in files]
    return names


def _dependency_path() -> list[str]:
    """sys.path of a plain start of this interpreter, minus the checkout itself.

    The subprocesses start with -S: the venv may hold an editable install of this checkout,
    whose .pth finder serves any subpackage missing from the install straight from the checkout
    and would hide exactly the bug this file looks for. -S skips .pth files, so the dependencies'
    folders are handed over explicitly instead.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        env=env, cwd="/", capture_output=True, text=True, check=True,
    ).stdout
    root = ROOT.resolve()
    return [p for p in json.loads(out) if p and Path(p).exists() and Path(p).resolve() != root]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install` of the checkout into a folder of its own; returns that folder."""
    base = tmp_path_factory.mktemp("installed")
    # Build from a copy: setuptools writes build/ and *.egg-info beside pyproject.toml, and
    # those must not land in (or be read from) the checkout.
    src = base / "src"
    src.mkdir()
    for item in ROOT.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, src / item.name)
    for top in PACKAGES:
        shutil.copytree(ROOT / top, src / top, ignore=_ignored)
    site = base / "site"
    # --no-deps / --no-build-isolation / --no-index: use the dependencies and setuptools
    # already installed, download nothing.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
        check=True, cwd=base, capture_output=True, text=True,
    )
    return site


def _python(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter with only the install and the dependencies on sys.path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *_dependency_path()])
    env["PYTHONSAFEPATH"] = "1"  # neither the cwd nor the script's folder on sys.path
    env.pop("CLIPSEARCH_INDEX", None)
    return subprocess.run([sys.executable, "-S", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _clipsearch(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = site / "bin" / "clipsearch"  # the console script pip writes for cli:main
    if script.is_file():
        return _python(site, cwd, str(script), *args)
    main = "import sys, cli; sys.argv = ['clipsearch', *sys.argv[1:]]; sys.exit(cli.main())"
    return _python(site, cwd, "-c", main, *args)


def test_installed_package_holds_every_package_folder_with_all_its_modules(
    installed: Path,
) -> None:
    modules = _source_modules()
    assert {"search", "search/web", "indexes", "indexes/vectors"} <= set(modules)
    missing = [f"{folder}/{name}" for folder, files in modules.items() for name in files
               if not (installed / folder / name).is_file()]
    assert missing == [], f"not installed by `pip install .`: {missing}"
    assert (installed / "cli.py").is_file()


def test_installed_modules_all_import_from_the_install_not_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    names = _module_names(_source_modules())
    code = (
        "import importlib, json, sys\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in sys.argv[1:]}))"
    )
    result = _python(installed, tmp_path, "-c", code, "cli", *names)
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)
    site = installed.resolve()
    elsewhere = {n: f for n, f in files.items() if not Path(f).resolve().is_relative_to(site)}
    assert elsewhere == {}, f"imported from outside the install: {elsewhere}"


def test_installed_package_indexes_and_queries_from_outside_the_checkout(
    installed: Path, tmp_path: Path, tiny_dir: Path, reference
) -> None:
    folder = tmp_path / "photos"
    photos = [make_photo(folder / f"p{i}.png", seed=i) for i in range(PHOTOS)]
    index = tmp_path / "idx"
    indexed = _clipsearch(installed, tmp_path, "index", str(folder), "--index", str(index),
                          "--model", f"local-dir:{tiny_dir}", "--precision", "fp32")
    assert indexed.returncode == 0, indexed.stderr
    assert f"{PHOTOS} new" in indexed.stderr

    queried = _clipsearch(installed, tmp_path, "query", "a red square", "--index", str(index),
                          "--json", "-k", "2")
    assert queried.returncode == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2]
    assert {r["path"] for r in rows} <= {str(p) for p in photos}

    # The answer, not only the exit code: brute force over open_clip's own vectors.
    cosines = reference.images(photos) @ reference.texts(["a red square"])[0]
    order = np.argsort(-cosines)
    assert cosines[order[0]] - cosines[order[1]] > 1e-3  # a clear winner, else pick other seeds
    assert rows[0]["path"] == str(photos[order[0]])
    assert rows[0]["score"] == pytest.approx(cosines[order[0]], abs=1e-3)
