"""The command line: outputs for people and pipes, and one clear line for every error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import make_photo
from typer.testing import CliRunner

import cli

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def index_dir(tmp_path: Path, photos: Path, tiny_dir: Path) -> Path:
    index = tmp_path / "idx"
    code, _, err = run(
        "index", str(photos), "--index", str(index), "--model", f"local-dir:{tiny_dir}"
    )
    assert code == 0, err
    assert "12 new" in err
    return index


def test_second_index_run_says_nothing_to_do(index_dir: Path, photos: Path) -> None:
    # No --model: the index remembers which model made it.
    code, _, err = run("index", str(photos), "--index", str(index_dir))
    assert code == 0 and "up to date: 12 images unchanged" in err


def test_query_json_lines_carry_rank_score_path(index_dir: Path) -> None:
    code, out, _ = run("query", "a beach", "--index", str(index_dir), "-k", "3", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rank"] for r in rows] == [1, 2, 3]
    assert all({"rank", "score", "path"} <= set(r) for r in rows)
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


def test_query_paths_prints_bare_paths_and_pipes_get_score_tab_path(index_dir: Path) -> None:
    _, out, _ = run("query", "a beach", "--index", str(index_dir), "-k", "2", "--paths")
    assert all(os.path.isfile(line) for line in out.splitlines()) and len(out.splitlines()) == 2
    _, plain, _ = run("query", "a beach", "--index", str(index_dir), "-k", "2")
    score, path = plain.splitlines()[0].split("\t")
    assert float(score) <= 1.0 and os.path.isfile(path)


def test_query_html_writes_a_page_of_thumbnails(index_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "out.html"
    code, _, _ = run("query", "city", "--index", str(index_dir), "-k", "4", "--html", str(page))
    text = page.read_text()
    assert code == 0 and text.count('<img src="data:image/jpeg;base64,') == 4
    assert 'id="results"' in text


def test_texts_add_list_remove_and_describe(index_dir: Path, tmp_path: Path, photos: Path) -> None:
    captions = tmp_path / "captions.csv"
    captions.write_text("text,source\na beach,x\na city,y\na dog,z\na beach,dup\n")
    code, _, err = run("texts", "add", str(captions), "--index", str(index_dir))
    assert code == 0 and "3 texts added" in err
    _, listed, _ = run("texts", "list", "--index", str(index_dir))
    assert listed.splitlines() == ["a beach", "a city", "a dog"]
    image = next(photos.rglob("*.png"))
    code, out, _ = run("describe", str(image), "--index", str(index_dir), "-k", "2", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rank"] for r in rows] == [1, 2] and rows[0]["text"] in listed
    code, _, err = run("texts", "remove", "a dog", "--index", str(index_dir))
    assert code == 0 and "1 texts removed" in err
    _, listed, _ = run("texts", "list", "--index", str(index_dir))
    assert listed.splitlines() == ["a beach", "a city"]


def test_texts_add_reads_jsonl_and_plain_lines(index_dir: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    plain = tmp_path / "t.txt"
    plain.write_text("three\n\n  four  \n")
    assert run("texts", "add", str(jsonl), "--index", str(index_dir))[0] == 0
    assert run("texts", "add", str(plain), "--index", str(index_dir))[0] == 0
    assert run("texts", "list", "--index", str(index_dir))[1].split("\n")[:4] == [
        "one",
        "two",
        "three",
        "four",
    ]


def test_info_reports_model_counts_and_skipped_reasons(index_dir: Path, photos: Path) -> None:
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    run("index", str(photos), "--index", str(index_dir))
    code, out, _ = run("info", "--index", str(index_dir), "--json", "--errors")
    data = json.loads(out)
    assert code == 0 and data["vectors"] == 12 and data["skipped"] == 1
    assert data["model"].startswith("local-dir:") and data["dim"] == 32
    assert data["skipped_files"][0]["path"] == str(photos / "broken.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (["index", "/no/such/folder"], "/no/such/folder: no such folder"),
        (["query", "x"], "no index at"),
        (["describe", "/no/such.jpg"], "no index at"),
    ],
)
def test_errors_exit_nonzero_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run(*args, "--index", str(tmp_path / "nothing"))
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_indexing_a_file_instead_of_a_folder_is_refused(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "one.png", seed=1)
    code, _, err = run("index", str(photo), "--index", str(tmp_path / "idx"))
    assert code == 1 and "not a folder" in err


def test_folder_without_images_is_refused(tmp_path: Path, tiny_dir: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hi")
    code, _, err = run(
        "index",
        str(tmp_path / "docs"),
        "--index",
        str(tmp_path / "idx"),
        "--model",
        f"local-dir:{tiny_dir}",
    )
    assert code == 1 and "no images found" in err


def test_unreadable_query_image_names_the_file(index_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    code, _, err = run("query", "--image", str(bad), "--index", str(index_dir))
    assert code == 1 and "bad.jpg" in err and "cannot read query image" in err
    code, _, err = run("query", "--image", str(tmp_path / "missing.jpg"), "--index", str(index_dir))
    assert code == 1 and "missing.jpg" in err


def test_other_model_on_an_existing_index_is_refused_with_the_fix(
    index_dir: Path, tmp_path: Path, photos: Path
) -> None:
    from tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other-model", seed=1)
    code, _, err = run(
        "index", str(photos), "--index", str(index_dir), "--model", f"local-dir:{other}"
    )
    assert code == 1 and "other-model" in err and "tiny" in err and "--index" in err
    code, out, err = run("query", "a beach", "--index", str(index_dir),
                         "--model", f"local-dir:{other}")
    assert code == 1 and not out and "other-model" in err and "tiny" in err


def test_offline_default_model_says_how_to_use_a_local_checkpoint(
    tmp_path: Path, tiny_dir: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty HF cache and an endpoint nobody listens on: the situation on an offline machine.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    code, _, err = run("index", str(photos), "--index", str(tmp_path / "idx"))
    assert code == 1 and "offline" in err and "--pretrained /path/to" in err
    assert "Traceback" not in err
    # The failed run recorded no model, so the same index can be built with a local one.
    code, _, err = run(
        "index", str(photos), "--index", str(tmp_path / "idx"), "--model", f"local-dir:{tiny_dir}"
    )
    assert code == 0, err


def test_help_and_info_do_not_import_torch(index_dir: Path) -> None:
    # cli.app, not cli.main: main ends the process with os._exit, before any check here.
    probe = (
        "import sys, cli; sys.argv = ['clipsearch'] + sys.argv[1:]\n"
        "try:\n    cli.app()\n"
        "except SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    for args in (["--help"], ["info", "--index", str(index_dir)], ["query", "--bogus"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


def test_installed_entry_point_exits_nonzero_on_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "cli.py", "query", "x", "--index", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.startswith("clipsearch: error: no index at")


INSTALLED = Path(sys.executable).parent / "clipsearch"


@pytest.mark.skipif(not INSTALLED.exists(), reason="clipsearch is not installed in this venv")
def test_the_installed_command_works_outside_the_checkout(
    tmp_path: Path, photos: Path, tiny_dir: Path
) -> None:
    # Run from elsewhere, so the installed package (not this checkout) is what runs.
    index = str(tmp_path / "idx")
    model = ["--model", f"local-dir:{tiny_dir}"]
    done = subprocess.run([str(INSTALLED), "index", str(photos), "--index", index, *model],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "12 new" in done.stderr, done.stderr
    done = subprocess.run(
        [str(INSTALLED), "query", "a beach", "--index", index, "--paths"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 10


def test_precision_is_recorded_and_a_different_one_refused(
    tmp_path: Path, photos: Path, tiny_dir: Path
) -> None:
    index = str(tmp_path / "idx")
    model = ["--model", f"local-dir:{tiny_dir}"]
    code, _, err = run("index", str(photos), "--index", index, *model, "--precision", "bf16")
    assert code == 0, err
    assert json.loads(run("info", "--index", index, "--json")[1])["precision"] == "bf16"
    code, _, err = run("index", str(photos), "--index", index, "--precision", "fp32")
    assert code == 1 and "bf16" in err and "fp32" in err and "--index" in err
    code, _, err = run("index", str(photos), "--index", index, "--precision", "fp64")
    assert code == 2 and "--precision" in err
