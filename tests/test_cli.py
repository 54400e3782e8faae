"""The ``losskit`` command: help, demo, plot, JSON output, error paths, safe writes.

Most tests call ``losskit.cli.main(argv)`` in this process (what the console script runs);
a few run a subprocess where the point is a fresh interpreter (entry point, missing extras,
import hygiene). Figures are checked as files: a PNG signature and size read by Pillow, an
SVG that parses as XML with an <svg> root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("typer")
pytest.importorskip("rich")
pytest.importorskip("matplotlib")

from losskit.cli import main  # noqa: E402
from losskit.cli.figures import FIGURES  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_png(path: Path):
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 300 and height >= 200


def assert_svg(path: Path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 50  # drawn content, not an empty canvas


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("losskit: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- help -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, examples", [
    ([], ["demo", "plot"]),
    (["--help"], ["demo", "plot", "COMMAND --help"]),
    (["demo", "--help"], ["Examples", "losskit demo --task multiclass --epochs 10", "--json", "--seed",
                          "--out", "--epochs", "--task"]),
    (["plot", "--help"], ["Examples", "losskit plot all", "losskit plot sigmoid --out sigmoid.png",
                          "--format", "--json", "bce-landscape"]),
])
def test_help_with_examples_on_every_command(capsys, args, examples):
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    for fragment in examples:
        assert fragment in out, (fragment, out)


# -- demo -----------------------------------------------------------------------------------
def test_demo_json_short_run(capsys, tmp_path):
    code, out, err = run_cli(capsys, "demo", "--epochs", "5", "--seed", "0", "--out", str(tmp_path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["tasks"]) == {"binary", "multiclass", "multilabel", "regression"}
    for task, result in report["tasks"].items():
        assert result["epochs"] == 5 and len(result["train_loss"]) == 6
        assert result["train_loss"][-1] < result["train_loss"][0], task
        assert result["val_loss"][-1] < result["val_loss"][0], task
        for metric, value in result["metrics"].items():
            assert value > result["baseline"][metric], (task, metric)
    assert json.loads((tmp_path / "results.json").read_text()) == report
    assert_png(tmp_path / "loss_curves.png")
    tasks = ["binary", "multiclass", "multilabel", "regression"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["loss_curves.png", "results.json", *[f"predictions-{t}.parquet" for t in tasks],
         "calibration-binary.json", "calibration-multiclass.json"])


def test_demo_tables_for_one_task(capsys, tmp_path):
    code, out, err = run_cli(capsys, "demo", "--task", "multiclass", "--epochs", "2", "--out", str(tmp_path))
    assert code == 0, err
    for fragment in ("multiclass: digits", "MulticlassHead", "softmax", "SoftmaxCrossEntropy",
                     "train loss", "held-out loss", "held-out accuracy", "baseline", "goal >= 0.95"):
        assert fragment in out, fragment
    assert "binary" not in out
    assert "multiclass" in err  # the progress bar goes to stderr, the tables to stdout


def test_demo_creates_a_missing_output_directory(capsys, tmp_path):
    out_dir = tmp_path / "a" / "b"
    code, _, err = run_cli(capsys, "demo", "--task", "regression", "--epochs", "1", "--out", str(out_dir), "--json")
    assert code == 0, err
    assert_png(out_dir / "loss_curves.png")


# -- plot -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize("name", list(FIGURES))
def test_each_figure_is_written_and_valid(capsys, tmp_path, name, fmt):
    target = tmp_path / f"figure.{fmt}"
    code, out, err = run_cli(capsys, "plot", name, "--out", str(target), "--json")
    assert code == 0, err
    (assert_png if fmt == "png" else assert_svg)(target)
    assert json.loads(out) == [{"figure": name, "file": str(target), "format": fmt,
                                "bytes": target.stat().st_size, "description": FIGURES[name][1]}]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left
    if fmt == "png":  # docs/cli.md: "256-colour palette, 13 to 33 kB each"
        assert 13_000 <= target.stat().st_size <= 33_000


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_the_losses_figure_of_each_task_is_within_the_documented_size(capsys, tmp_path, task):
    """docs/cli.md said 13 to 31 kB; the multi-label losses figure is 32.9 kB (review)."""
    target = tmp_path / "losses.png"
    assert run_cli(capsys, "plot", "losses", "--task", task, "--out", str(target))[0] == 0
    assert_png(target)
    assert 13_000 <= target.stat().st_size <= 33_000


def test_plot_all_into_a_directory_as_svg(capsys, tmp_path):
    code, out, err = run_cli(capsys, "plot", "all", "--out", str(tmp_path / "figs"), "--format", "svg")
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert files == sorted(f"{name}.svg" for name in FIGURES)
    assert "figures written" in out and "bce-landscape" in out
    # the landscape's mesh is an image in the SVG: as 24,400 vector paths it was 4.7 MB (found in review)
    assert max(p.stat().st_size for p in (tmp_path / "figs").iterdir()) < 500_000


def test_same_figure_same_bytes(capsys, tmp_path):
    for name in ("one.svg", "two.svg"):
        assert run_cli(capsys, "plot", "softmax", "--out", str(tmp_path / name))[0] == 0
    assert (tmp_path / "one.svg").read_bytes() == (tmp_path / "two.svg").read_bytes()


# -- errors: one line on stderr, exit code 2 --------------------------------------------------
# Set up in the working directory before each case: a file, and directories where a command
# would write a file. (args, the flag the line must start with, a fragment of the rest)
BAD_OPTIONS = [
    (["demo", "--task", "ranking"], "--task", "'ranking' is not one of"),
    (["demo", "--epochs", "0"], "--epochs", "greater than or equal to 1"),
    (["demo", "--epochs", "-5"], "--epochs", "greater than or equal to 1"),
    (["demo", "--epochs", "1.5"], "--epochs", "valid integer"),
    (["demo", "--epochs", "two"], "--epochs", "valid integer"),
    (["demo", "--seed", "-1"], "--seed", "greater than or equal to 0"),
    (["demo", "--seed", "x"], "--seed", "valid integer"),
    (["demo", "--epochs", "1", "--out", "file"], "--out", "expected a directory, got the existing file 'file'"),
    (["demo", "--epochs", "1", "--out", "file/sub"], "--out", "cannot create the directory 'file/sub'"),
    (["demo", "--epochs", "1", "--out", "taken"], "--out",
     "expected a file name, got the existing directory 'taken/results.json'"),
    (["plot", "loss-surface"], "figure", "'loss-surface' is not one of"),
    (["plot", "all", "--format", "gif"], "--format", "'gif' is not one of 'png', 'svg'"),
    (["plot", "all", "--out", "figures.png"], "--out", "expected a directory for 'plot all'"),
    (["plot", "mse", "--out", "mse.svg", "--format", "png"], "--format", "expected svg"),
    (["plot", "all", "--out", "file"], "--out", "expected a directory, got the existing file 'file'"),
    (["plot", "bce", "--out", "file"], "--out", "expected a directory, got the existing file 'file'"),
    (["plot", "sigmoid", "--out", "file/sigmoid.png"], "--out", "expected a directory, got the existing file"),
    (["plot", "bce", "--out", "taken"], "--out", "expected a file name, got the existing directory 'taken/bce.png'"),
]


def _tree(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.is_dir() or p.read_bytes()) for p in root.rglob("*"))


@pytest.mark.parametrize("args, flag, fragment", BAD_OPTIONS, ids=[" ".join(c[0]) for c in BAD_OPTIONS])
def test_every_bad_option_is_refused_by_name_before_any_work(capsys, tmp_path, monkeypatch, args, flag,
                                                             fragment):
    import losskit.cli.plot
    import losskit.demo

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("keep me")
    for name in ("results.json", "bce.png"):
        (tmp_path / "taken" / name).mkdir(parents=True)
    before = _tree(tmp_path)
    work = []
    monkeypatch.setattr(losskit.demo, "run", lambda *a, **k: work.append("train") or 1 / 0)
    monkeypatch.setattr(losskit.cli.plot, "figure_writer", lambda *a, **k: work.append("save") or 1 / 0)
    code, out, err = run_cli(capsys, *args)
    assert_one_line_error(code, out, err, f"losskit: error: {flag}: ", fragment)
    assert err.startswith(f"losskit: error: {flag}: "), err  # the flag first, then what is wrong
    assert out == "" and work == []  # no progress line, no table, no training, no drawing
    assert _tree(tmp_path) == before  # nothing written, not even a directory


@pytest.mark.parametrize("args, fragment", [(["fit"], "No such command 'fit'"),
                                            (["demo", "--no-such-option"], "No such option"),
                                            (["demo", "--epochs"], "'--epochs' requires an argument")])
def test_usage_errors(capsys, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run_cli(capsys, *args), fragment)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_a_directory_whatever_its_suffix(capsys, tmp_path):
    (tmp_path / "figs.png").mkdir()
    code, out, err = run_cli(capsys, "plot", "sigmoid", "--out", str(tmp_path / "figs.png"), "--json")
    assert code == 0, err
    assert json.loads(out)[0]["file"] == str(tmp_path / "figs.png" / "sigmoid.png")


@pytest.mark.parametrize("module, command, package", [
    ("matplotlib", ["plot", "sigmoid"], "matplotlib"),
    ("matplotlib", ["demo", "--epochs", "1"], "matplotlib"),
])
def test_missing_extra_names_the_pip_command(capsys, tmp_path, monkeypatch, module, command, package):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert_one_line_error(*run_cli(capsys, *command), f"needs {package}", "pip install 'losskit[cli]'")
    assert list(tmp_path.iterdir()) == []


def test_demo_needs_neither_scikit_learn_nor_scipy(capsys, tmp_path, monkeypatch):
    for module in ("sklearn", "scipy"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    code, out, err = run_cli(capsys, "demo", "--task", "regression", "--epochs", "2", "--out", str(tmp_path),
                             "--json")
    assert code == 0, err
    result = json.loads(out)["tasks"]["regression"]
    assert (result["epochs"], result["n_train"], result["n_val"]) == (2, 332, 110)  # 442 patients, 25 % held out


def test_missing_typer_in_a_fresh_interpreter():
    code = ("import sys; sys.modules['typer'] = None; from losskit.cli import main; "
            "sys.exit(main(['demo']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("losskit: error: the losskit command needs typer, which is not "
                                   "installed: pip install 'losskit[cli]'")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(capsys, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = tmp_path / "sigmoid.png"
    target.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        if hasattr(fname, "write"):
            fname.write(PNG_SIGNATURE)  # half an image, then the failure
        else:
            Path(fname).write_bytes(PNG_SIGNATURE)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    assert_one_line_error(*run_cli(capsys, "plot", "sigmoid", "--out", str(target)), "No space left on device")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["sigmoid.png"]


def test_an_interrupted_demo_writes_nothing(capsys, tmp_path, monkeypatch):
    import losskit.demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(losskit.demo, "run", interrupted)
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path))
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []
    # the directories made for the run removed again (an empty new directory was left)
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "new" / "run"))
    assert code == 130 and list(tmp_path.iterdir()) == []


def test_plot_all_whose_write_fails_keeps_the_figures_of_the_run_before(capsys, tmp_path, monkeypatch):
    """plot all wrote its figures one by one: a full disk at the fourth left three new figures beside five of
    the run before. Now all are drawn, then written together."""
    from matplotlib.figure import Figure

    assert run_cli(capsys, "plot", "all", "--out", str(tmp_path), "--json")[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    saved, savefig = [], Figure.savefig

    def fourth_fails(self, fname, **kwargs):
        saved.append(fname)
        if len(saved) == 4:
            raise OSError(28, "No space left on device")
        return savefig(self, fname, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fourth_fails)
    assert_one_line_error(*run_cli(capsys, "plot", "all", "--out", str(tmp_path), "--json"), "No space left")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # the directories --out made are removed again, as the demo's are (an empty new/sub was left; review)
    saved.clear()
    assert_one_line_error(*run_cli(capsys, "plot", "all", "--out", str(tmp_path / "new" / "sub"), "--json"),
                          "No space left")
    assert {p.name for p in tmp_path.iterdir()} == set(before)

    def interrupted(self, fname, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    code, _, err = run_cli(capsys, "plot", "sigmoid", "--out", str(tmp_path / "one" / "s.png"))
    assert code == 130 and "interrupted" in err
    assert {p.name for p in tmp_path.iterdir()} == set(before)


def test_plot_refuses_an_image_format_it_does_not_write_and_creates_nothing_for_a_bad_name(capsys, tmp_path):
    # x.pdf became a directory holding sigmoid.png; a name too long for the file system was refused only after
    # its missing directories had been made
    for name in ("x.pdf", "x.JPG"):
        assert_one_line_error(*run_cli(capsys, "plot", "sigmoid", "--out", str(tmp_path / name)),
                              "--out: expected a directory or a file ending in .png or .svg")
    long = tmp_path / "new" / "sub" / ("a" * 250 + ".png")
    assert_one_line_error(*run_cli(capsys, "plot", "sigmoid", "--out", str(long)), "--out: expected a file name of")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "figs.pdf").mkdir()  # an existing directory is one whatever its suffix
    assert run_cli(capsys, "plot", "sigmoid", "--out", str(tmp_path / "figs.pdf"), "--json")[0] == 0


def test_the_plot_table_never_cuts_a_file_name(capsys, tmp_path):
    # the file column folds a long path over lines: read back, it holds every path whole (it was cut with "…")
    out_dir = tmp_path / ("a_rather_long_directory_name_for_figures_" * 2)
    code, out, err = run_cli(capsys, "plot", "all", "--out", str(out_dir))
    assert code == 0, err
    column = "".join(line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 5)
    assert "…" not in column
    for path in sorted(out_dir.iterdir()):
        assert str(path) in column, path
    assert len(list(out_dir.iterdir())) == 8


# -- entry point and import hygiene -----------------------------------------------------------
def test_module_entry_point_and_lazy_imports():
    code = ("import sys; from losskit.cli import build_app; build_app(); "
            "print(','.join(m for m in ('matplotlib', 'sklearn', 'torch', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""  # `losskit --help` stays fast: no plotting or data import
    for module in ("losskit.cli", "losskit"):  # (python -m losskit: "cannot be directly executed", found in review)
        done = subprocess.run([sys.executable, "-m", module, "plot", "nope"], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("losskit: error: figure: 'nope' is not one of")


def test_a_trailing_slash_makes_out_a_directory(capsys, tmp_path):
    """`--out figs.svg/` wrote a file named figs.svg, and `plot all --out figs.png/` was refused as a file name:
    the path's trailing slash was dropped (found in review). It says a directory, as POSIX reads it."""
    code, out, err = run_cli(capsys, "plot", "sigmoid", "--out", f"{tmp_path / 'one.svg'}/")
    assert code == 0, err
    assert (tmp_path / "one.svg").is_dir() and [p.name for p in (tmp_path / "one.svg").iterdir()] == ["sigmoid.png"]
    code, out, err = run_cli(capsys, "plot", "all", "--out", f"{tmp_path / 'all.png'}/")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "all.png").iterdir()) == sorted(f"{name}.png" for name in FIGURES)


def test_options_that_would_be_ignored_are_refused(capsys, tmp_path):
    """--task beside a figure that has no task, --l2 beside a method without offsets, --pred-kind on a
    regression file: each was accepted and ignored without a word."""
    code, out, err = run_cli(capsys, "plot", "sigmoid", "--task", "binary", "--out", str(tmp_path))
    assert_one_line_error(code, out, err, "--task: expected no --task for the sigmoid figure")
    code, out, err = run_cli(capsys, "plot", "losses", "--task", "binary", "--out", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)[0]["figure"] == "losses"
    path = tmp_path / "r.csv"
    path.write_text("pred,target\n1.5,1.25\n2.5,2.5\n0.5,0.75\n")
    code, out, err = run_cli(capsys, "eval", str(path), "--pred-kind", "probs")
    assert_one_line_error(code, out, err, "--pred-kind: expected no --pred-kind for a regression task")
    binary = tmp_path / "b.csv"
    binary.write_text("logit,target\n1,1\n-1,0\n2,0\n-2,1\n")
    code, out, err = run_cli(capsys, "calibrate", str(binary), "--l2", "0.5", "--out", str(tmp_path / "c.json"))
    assert_one_line_error(code, out, err, "--l2: expected no --l2 for --method temperature")
    assert not (tmp_path / "c.json").exists()


# -- the review of 2026-12-06 -----------------------------------------------------------------------------
def test_a_demo_whose_last_write_fails_keeps_every_file_of_the_run_before(capsys, tmp_path, monkeypatch):
    """The demo wrote its files one by one, the figure first: a full disk at the predictions left the new
    figure beside the last run's predictions and results. Now every file is written to a temporary name
    first and renamed only when all are: a failure leaves the earlier run's files as they were, no
    temporary file, and one line naming the file."""
    import pyarrow.parquet as pq

    assert run_cli(capsys, "demo", "--task", "regression", "--epochs", "1", "--out", str(tmp_path))[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    code, _, err = run_cli(capsys, "demo", "--task", "regression", "--epochs", "2", "--seed", "1", "--json",
                           "--out", str(tmp_path))  # (--json: no progress bar on stderr)
    assert_one_line_error(code, "", err, "predictions.parquet': No space left on device")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_demo_leaves_no_file_of_an_earlier_run_beside_its_own(capsys, tmp_path):
    """A run that wrote no calibration (another task; a binary network with no temperature) left the last
    run's calibration.json beside its predictions, and `losskit eval --calibration` applied it; one task
    after four left the four predictions-TASK.parquet. The files an earlier demo run listed in its
    results.json and this run did not write are removed; files the demo did not write are kept (a
    calibration.json of `losskit calibrate` in a shared folder), and results.json lists the run's files."""
    code, out, err = run_cli(capsys, "demo", "--task", "binary", "--epochs", "2", "--out", str(tmp_path), "--json")
    assert code == 0, err
    files = json.loads(out)["files"]
    assert sorted(Path(f).name for f in files) == [
        "calibration.json", "loss_curves.png", "predictions.parquet", "results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in files)
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "demo", "--task", "regression", "--epochs", "1", "--out", str(tmp_path),
                             "--json")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "loss_curves.png", "notes.txt", "predictions.parquet", "results.json"]  # the binary run's calibration: gone
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("calibration.json", "predictions-binary.parquet"):  # a user's, no demo results.json beside them
        (shared / name).write_text("a user's")
    assert run_cli(capsys, "demo", "--task", "regression", "--epochs", "1", "--out", str(shared), "--json")[0] == 0
    assert (shared / "calibration.json").read_text() == "a user's"
    assert (shared / "predictions-binary.parquet").read_text() == "a user's"
    # a file the earlier run listed but another tool rewrote since (`losskit calibrate ... --out calibration.json`
    # into the demo's folder) is the user's now: it was removed, as its name was in results.json (review)
    again = tmp_path / "again"
    assert run_cli(capsys, "demo", "--task", "binary", "--epochs", "2", "--out", str(again), "--json")[0] == 0
    code, _, err = run_cli(capsys, "calibrate", str(again / "predictions.parquet"), "--method", "platt",
                           "--out", str(again / "calibration.json"))
    assert code == 0, err
    platt = (again / "calibration.json").read_text()
    assert run_cli(capsys, "demo", "--task", "regression", "--epochs", "1", "--out", str(again), "--json")[0] == 0
    assert (again / "calibration.json").read_text() == platt


@pytest.mark.parametrize("args", [
    ["plot", "sigmoid", "--out", "{long}.png"],  # was OSError 36 from out.is_dir(), naming no option
    ["plot", "all", "--out", "{long}"],
    ["plot", "sigmoid", "--out", "{long}/x.png"],
    ["demo", "--task", "binary", "--epochs", "1", "--out", "{long}"],  # was OSError 36 from path.exists()
    ["demo", "--task", "binary", "--epochs", "1", "--out", "{long}/run"],
])
def test_a_path_name_past_the_file_systems_limit_is_refused_naming_out(capsys, tmp_path, args):
    long = str(tmp_path / ("a" * 300))
    code, out, err = run_cli(capsys, *[a.format(long=long) for a in args])
    assert_one_line_error(code, out, err, "--out: expected a path whose every name is at most")
    assert list(tmp_path.iterdir()) == []


def test_plot_to_a_file_checks_its_name_before_drawing(capsys, tmp_path, monkeypatch):
    """``plot FIG --out FILE.png`` checked only the directory: a name past the file system's limit failed
    after the figure was drawn, with the temporary file's name (OSError 36). And bare ``losskit`` printed its
    help twice."""
    import losskit.cli.figures as figures

    def never(*args, **kwargs):
        raise AssertionError("the figure was drawn")

    monkeypatch.setitem(figures.FIGURES, "sigmoid", (never, figures.FIGURES["sigmoid"][1]))
    long = tmp_path / ("a" * 250 + ".png")
    assert_one_line_error(*run_cli(capsys, "plot", "sigmoid", "--out", str(long)), "--out: expected a file name of")
    code, out, _ = run_cli(capsys)
    assert code == 0 and out.count("Usage:") == 1
