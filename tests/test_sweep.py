"""Sweeps end to end: grid expansion, the driver and its executors, kill and resume."""

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image
from test_train import MEASURED
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import InputError
from sparsebench.sparsity.scenarios import SCENARIOS
from sparsebench.store import ResultsStore
from sparsebench.sweep.plan import expand_grid, plan_counts, plan_sweep
from sparsebench.sweep.settings import load_sweep_config

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = """
name: tiny
models: [resnet18]
datasets:
  - dataset: synthetic
methods: [dense, pre, post]
scenarios: [mixed, uniform]
seeds: {seeds}
training: {{width: 0.125, epochs: 2, batch_size: 32, lr: 2.0e-3, device: cpu}}
"""


def write_config(folder: Path, seeds="[0, 1]", text=TINY) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(text.format(seeds=seeds))
    return path


def sweep_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sparsebench.cli", "sweep", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def sweep_into(folder: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    """`sparsebench sweep CONFIG` with its database and runs in `folder`, as JSON."""
    return sweep_cli(
        str(config),
        "--db",
        str(folder / "r.db"),
        "--runs-dir",
        str(folder / "runs"),
        "--json",
        *args,
    )


def stored_rows(db: Path) -> dict:
    """Everything a sweep writes that does not depend on timing, keyed for comparison."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        runs = {
            row["run_id"]: (row["status"], row["method"], row["scenario"], row["derived_from"])
            for row in connection.execute("SELECT * FROM runs")
        }
        tables = {}
        for table, key in (
            ("epochs", "epoch"),
            ("test_metrics", None),
            ("layer_sparsity", "layer"),
        ):
            rows = connection.execute(f"SELECT * FROM {table}").fetchall()
            keyed = [((row["run_id"], row[key] if key else None), dict(row)) for row in rows]
            assert len({k for k, _ in keyed}) == len(keyed), f"duplicate rows in {table}"
            tables[table] = {
                k: {c: v for c, v in row.items() if c not in MEASURED} for k, row in keyed
            }
    return {"runs": runs, **tables}


def test_only_runs_a_part_of_the_grid_with_the_dense_runs_it_derives_from(tmp_path):
    # paper.yaml: 2 models x 3 data sets x 3 seeds; of VGG16 on data/mvtec3d_objects
    # at seed 1, the post runs (3 scenarios) are derived from that one dense run.
    plan = runner.invoke(
        app,
        [
            "sweep", str(CONFIGS / "paper.yaml"), "--dry-run", "--json",
            "--db", str(tmp_path / "none.db"),
            "--only", "model=vgg16", "--only", "seed=1",
            "--only", "method=post", "--only", "method=pre",
            "--only", "data=mvtec3d_objects",
        ],
    )  # fmt: skip
    runs = json.loads(plan.stdout)["runs"]
    assert {(run["method"], run["scenario"]) for run in runs} == {
        ("dense", "dense"),
        *((method, scenario) for method in ("pre", "post") for scenario in SCENARIOS),
    }
    assert {(run["model"], run["seed"], run["data"]) for run in runs} == {
        ("vgg16", 1, "mvtec3d_objects")
    }
    dense = next(run["run_id"] for run in runs if run["method"] == "dense")
    assert {run["derived_from"] for run in runs if run["method"] == "post"} == {dense}
    # Values no run has, and keys the grid does not know, are named with what there is.
    for only, message in (
        ("seed=7", "--only seed=7: no run of the grid has it (seed: 0, 1, 2)"),
        ("colour=red", "--only colour: no such key (keys: data, model, method"),
        ("seed", "--only: expected KEY=VALUE, got 'seed'"),
    ):
        result = runner.invoke(app, ["sweep", str(CONFIGS / "paper.yaml"), "--dry-run",
                                     "--only", only])  # fmt: skip
        assert result.exit_code != 0 and message in result.stderr


@pytest.fixture(scope="module")
def straight_sweep(tmp_path_factory):
    """One uninterrupted sweep of the tiny grid (2 seeds), the reference for the others;
    by default, on this 2-core machine: 2 workers of one torch thread each."""
    folder = tmp_path_factory.mktemp("straight")
    config = write_config(folder)
    result = sweep_into(folder, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, json.loads(result.stdout)


def test_paper_grid_trains_180_runs_and_derives_54(tmp_path):
    result = runner.invoke(
        app,
        [
            "sweep",
            str(CONFIGS / "paper.yaml"),
            "--dry-run",
            "--json",
            "--db",
            str(tmp_path / "none.db"),
        ],
    )
    # the plan is shown, and the data this machine lacks is named (exit code 2)
    assert result.exit_code == 2, result.output
    assert "3 of 3 data set(s) cannot be read" in result.stderr
    plan = json.loads(result.stdout)
    assert plan["counts"] == {"train": 180, "resume": 0, "derive": 54, "weights": 0, "skip": 0}
    runs = plan["runs"]
    assert len({run["run_id"] for run in runs}) == 234
    dense = {run["run_id"]: run for run in runs if run["method"] == "dense"}
    assert len(dense) == 2 * 3 * 3
    for run in runs:
        if run["method"] == "post":
            assert run["action"] == "derive"
            source = dense[run["derived_from"]]
            assert (source["model"], source["dataset"], source["seed"]) == (
                run["model"],
                run["dataset"],
                run["seed"],
            )
    assert not (tmp_path / "none.db").exists()  # a dry run writes nothing


def test_every_preset_is_valid():
    for name in ("paper", "cpu", "quick"):
        sweep = load_sweep_config(CONFIGS / f"{name}.yaml")
        assert expand_grid(sweep)
    quick = load_sweep_config(CONFIGS / "quick.yaml")
    assert [d.dataset for d in quick.datasets] == ["elpv"]


def test_the_demo_trains_without_a_warning_about_its_own_settings():
    """The demo's runs on ELPV's 1,836 training images, its batch size, schedule and
    options: no method warns about them (a user's first command reads clean)."""
    import warnings

    import torch

    from sparsebench.data.synthetic import make_synthetic
    from sparsebench.train.build import build_run, warn_if_few_steps

    quick = load_sweep_config(CONFIGS / "quick.yaml")
    data = make_synthetic(num_classes=2, image_size=32, samples=(1836, 2, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for grid_run in expand_grid(quick):
            config = grid_run.config.model_copy(update={"width": 0.0625})
            trainer = build_run(config, data, torch.device("cpu"))
            warn_if_few_steps(trainer.model, config, -(-1836 // config.batch_size))
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense]\nepochs: 3",
            "epochs: unknown key",
        ),
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense]\n"
            "training: {epoch: 3}",
            "training.epoch: unknown key",
        ),
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense]\n"
            "training: {lr: -1}",
            "training.lr: Input should be greater than 0",
        ),
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic, split: nope}]\nmethods: [dense]",
            "datasets[0].split: expected paper or csv",
        ),
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense, magic]",
            "methods: unknown method 'magic'",
        ),
        (
            "models: [alexnet]\ndatasets: [{dataset: synthetic}]\nmethods: [dense]",
            "models: unknown model 'alexnet'",
        ),
        (
            "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [set]\n"
            "scenarios: [mixed, heavy]",
            "scenarios: unknown scenario 'heavy'",
        ),
        ("models: [resnet18]\nmethods: [dense]", "datasets: Field required"),
    ],
)
def test_a_bad_sweep_config_names_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_sweep_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    result = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert message in result.output


POST_GRID = """
name: post-grid
models: [resnet18]
datasets:
  - dataset: synthetic
methods: [dense, post]
scenarios: {scenarios}
seeds: [0]
training: {{width: 0.125, epochs: 2, batch_size: 32, lr: 2.0e-3, device: cpu}}
"""


def test_a_finished_dense_run_whose_weights_are_gone_is_trained_again_once_for_them(tmp_path):
    import shutil

    def sweep_of(folder, scenarios):
        folder.mkdir(exist_ok=True)
        config = folder / "sweep.yaml"
        config.write_text(POST_GRID.format(scenarios=scenarios))
        result = sweep_into(folder, config, "--workers", "1")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    def rows(folder):
        with sqlite3.connect(folder / "r.db") as connection:
            query = (
                "SELECT r.method, r.scenario, r.derived_from, r.finished_at, t.accuracy "
                "FROM runs r JOIN test_metrics t USING (run_id)"
            )
            return {(m, s): (d, f, a) for m, s, d, f, a in connection.execute(query)}

    cut = tmp_path / "cut"
    sweep_of(cut, "[mixed]")
    before = rows(cut)
    shutil.rmtree(cut / "runs")  # the weights are gone; the database is kept
    outcome = sweep_of(cut, "[mixed, uniform]")
    assert outcome["counts"] == {"train": 0, "resume": 0, "derive": 1, "weights": 1, "skip": 1}
    after = rows(cut)
    dense_id = before[("dense", "dense")]
    assert after[("dense", "dense")] == dense_id  # its stored results are as they were
    assert after[("post", "uniform")][0] is not None  # derived from the dense run
    # Derived from weights trained again, it is what it is from the first weights.
    whole = tmp_path / "whole"
    sweep_of(whole, "[mixed, uniform]")
    assert after[("post", "uniform")][2] == rows(whole)[("post", "uniform")][2]


def test_sweep_trains_derives_and_a_second_sweep_does_nothing(straight_sweep):
    folder, outcome = straight_sweep
    assert outcome["counts"] == {"train": 6, "resume": 0, "derive": 4, "weights": 0, "skip": 0}
    assert outcome["finished"] == 10 and outcome["failed"] == []
    rows = stored_rows(folder / "r.db")
    assert {status for status, *_ in rows["runs"].values()} == {"finished"}
    dense_ids = {rid for rid, (_, method, *_) in rows["runs"].items() if method == "dense"}
    for run_id, (_, method, _, derived_from) in rows["runs"].items():
        if method == "post":
            assert derived_from in dense_ids
            # A derived run carries its dense run's training, epoch for epoch.
            ours = [rows["epochs"][(run_id, e)] for e in (0, 1)]
            theirs = [rows["epochs"][(derived_from, e)] for e in (0, 1)]
            assert [dict(r, run_id=None) for r in ours] == [dict(r, run_id=None) for r in theirs]
    again = sweep_into(folder, folder / "sweep.yaml")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["counts"] == {
        "train": 0,
        "resume": 0,
        "derive": 0,
        "weights": 0,
        "skip": 10,
    }
    assert stored_rows(folder / "r.db") == rows


def test_a_run_whose_data_is_refused_is_reported_and_the_sweep_goes_on(tmp_path):
    # The folder passes the sweep's data check (two class folders) but one of its
    # images does not decode: its runs fail when they load it, the others go on.
    broken = tmp_path / "broken"
    for name in ("a", "b"):
        (broken / name).mkdir(parents=True)
        for index in range(10):
            Image.new("L", (8, 8), 20 * index).save(broken / name / f"{index}.png")
    (broken / "a" / "x.png").write_bytes(b"not an image")
    text = TINY.replace(
        "  - dataset: synthetic\n",
        "  - dataset: synthetic\n  - dataset: folder\n    data_path: {broken}\n",
    ).replace("seeds: {seeds}", "seeds: [0]")
    config = tmp_path / "sweep.yaml"
    config.write_text(text.format(broken=broken))
    result = sweep_into(tmp_path, config)
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["finished"] == 5
    assert len(outcome["failed"]) == 5
    errors = {failure["error"] for failure in outcome["failed"]}
    assert any("x.png: image cannot be decoded" in error for error in errors)
    assert any(error.startswith("its dense run") for error in errors)
    with ResultsStore(tmp_path / "r.db") as store:
        overview = store.runs_overview()
    # an input error is refused, not a failure of the run: it leaves no row behind
    assert sorted(overview.status.value_counts().items()) == [("finished", 5)]


def test_a_sweep_checks_every_data_set_before_training_anything(tmp_path):
    text = TINY.replace(
        "  - dataset: synthetic\n",
        "  - dataset: synthetic\n  - dataset: folder\n    data_path: {missing}\n"
        "  - dataset: bloodmnist\n    data_path: {truncated}\n",
    ).replace("seeds: {seeds}", "seeds: [0]")
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(b"PK\x03\x04 cut short")
    config = tmp_path / "sweep.yaml"
    config.write_text(text.format(missing=tmp_path / "no-such-folder", truncated=truncated))
    for extra in ([], ["--dry-run"]):
        result = sweep_into(tmp_path, config, *extra)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "2 of 3 data set(s) cannot be read" in lines[0]
        assert "datasets[1] (folder): " in lines[0] and "no-such-folder" in lines[0]
        assert "datasets[2] (bloodmnist): " in lines[0] and "cut.npz" in lines[0]
        assert not (tmp_path / "r.db").exists() and not (tmp_path / "runs").exists()


def _wait_for(predicate, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the sweep never reached the kill point"
        time.sleep(0.05)
    # The predicate may first hold when the sweep has already ended (a poll starved on a
    # loaded machine): a signal then finds nothing to stop, which is not what is tested.
    assert process.poll() is None, (
        f"the sweep ended (exit {process.returncode}) before its kill point was seen",
        process.stderr.read()[-3000:],
    )


def _finished_runs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'finished'"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_sweep_killed_at_any_moment_ends_with_the_rows_of_an_uninterrupted_one(
    tmp_path, straight_sweep
):
    """SIGKILL the driver as soon as a first checkpoint exists; Ctrl-C (SIGINT to the
    whole process group, as a terminal sends it) after the first finished run; SIGKILL
    after the third; then run it to the end and compare with the straight sweep. Each
    stop leaves most of the sweep's training to do, so that on a fast machine the sweep
    cannot end on its own between the kill point and the signal."""
    reference, _ = straight_sweep
    config = write_config(tmp_path)
    db, runs_dir = tmp_path / "r.db", tmp_path / "runs"
    kill_points = [
        (lambda: any(runs_dir.glob("*/checkpoint.pt")), signal.SIGKILL),
        (lambda: _finished_runs(db) >= 1, signal.SIGINT),
        (lambda: _finished_runs(db) >= 3, signal.SIGKILL),
    ]
    for kill_point, kill_signal in kill_points:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sparsebench.cli",
                "sweep",
                str(config),
                "--db",
                str(db),
                "--runs-dir",
                str(runs_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        _wait_for(kill_point, process)
        workers = psutil.Process(process.pid).children(recursive=True)
        if kill_signal == signal.SIGKILL:
            os.kill(process.pid, signal.SIGKILL)
        else:
            os.killpg(process.pid, signal.SIGINT)
        returncode = process.wait(timeout=60)
        expected = -signal.SIGKILL if kill_signal == signal.SIGKILL else 130
        assert returncode == expected, (process.stdout.read(), process.stderr.read()[-3000:])
        # The workers die with their driver: nothing trains on behind a stopped sweep.
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    assert _finished_runs(db) < 10
    # Default workers as the straight sweep, so the same torch threads per run: float
    # sums then add up alike.
    finish = sweep_into(tmp_path, config)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert stored_rows(db) == stored_rows(reference / "r.db")


@pytest.mark.slow  # starting Ray takes most of its 30 to 45 s
def test_ray_executor_gives_the_results_of_the_local_one(tmp_path, straight_sweep):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray (the ray extra) is not installed")
    reference, _ = straight_sweep
    config = write_config(tmp_path)
    # As many torch threads per run as the local executor's default gave the straight
    # sweep (one on a machine of up to 8 cores, more above): float sums add up alike.
    from sparsebench.sweep.executors import available_cpus, default_workers

    threads = max(1, available_cpus() // default_workers())
    result = sweep_into(tmp_path, config, "--executor", "ray", "--cpus-per-run", str(threads))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["finished"] == 10
    assert stored_rows(tmp_path / "r.db") == stored_rows(reference / "r.db")


def test_dry_run_after_an_interruption_lists_resumes_and_skips(tmp_path, straight_sweep):
    reference, _ = straight_sweep
    grid = expand_grid(load_sweep_config(reference / "sweep.yaml"))
    with ResultsStore(reference / "r.db") as store:
        assert plan_counts(plan_sweep(grid, store, reference / "runs"))["skip"] == 10
    # Without the database every run with a checkpoint is resumed, and post still derives.
    counts = plan_counts(plan_sweep(grid, None, reference / "runs"))
    assert counts == {"train": 0, "resume": 6, "derive": 4, "weights": 0, "skip": 0}


SPARSITY_GRID = """
name: curve
models: [resnet18]
datasets: [{{dataset: synthetic}}]
methods: [dense, pre, post]
sparsities: {sparsities}
training: {{width: 0.125, epochs: 1}}
"""


def test_sparsity_is_a_grid_axis_beside_the_named_scenarios(tmp_path):
    path = tmp_path / "curve.yaml"
    path.write_text(SPARSITY_GRID.format(sparsities="{conv: [0.3, 0.5, 0.9], linear: [0.8]}"))
    runs = expand_grid(load_sweep_config(path))
    targets = sorted(
        (r.config.method, r.config.conv_sparsity, r.config.linear_sparsity, r.config.scenario)
        for r in runs
    )
    # dense once; conv 0.5 at linear 0.8 is the study's `mixed` (one run, one id); no
    # default scenario is added beside the list
    assert targets == [
        ("dense", 0.0, 0.0, None),
        ("post", 0.3, 0.8, None),
        ("post", 0.5, 0.8, "mixed"),
        ("post", 0.9, 0.8, None),
        ("pre", 0.3, 0.8, None),
        ("pre", 0.5, 0.8, "mixed"),
        ("pre", 0.9, 0.8, None),
    ]
    assert {r.config.scenario_label for r in runs if r.config.scenario is None} == {
        "dense",
        "conv0.3-linear0.8",
        "conv0.9-linear0.8",
    }
    # one list for both kinds, beside named scenarios
    path.write_text(
        SPARSITY_GRID.format(sparsities="{both: [0.5, 0.8]}").replace(
            "methods:", "scenarios: [linear-only]\nmethods:"
        )
    )
    runs = expand_grid(load_sweep_config(path))
    pre = sorted(r.config.scenario_label for r in runs if r.config.method == "pre")
    assert pre == ["conv0.5-linear0.5", "linear-only", "uniform"]


@pytest.mark.parametrize(
    ("sparsities", "said"),
    [
        ("{both: [0.5], conv: [0.3]}", "not all three"),
        ("{conv: [0.3]}", "`conv` and `linear` together"),
        ("{both: [1.0]}", "less than 1"),
        ("{both: []}", "at least 1 item"),
    ],
)
def test_a_sparsity_grid_that_cannot_be_read_is_named(tmp_path, sparsities, said):
    path = tmp_path / "curve.yaml"
    path.write_text(SPARSITY_GRID.format(sparsities=sparsities))
    with pytest.raises(InputError, match="sparsities") as refused:
        load_sweep_config(path)
    assert said in str(refused.value) and str(path) in str(refused.value)


def test_a_data_entry_takes_its_own_seeds(tmp_path):
    path = tmp_path / "seeds.yaml"
    path.write_text(
        "models: [resnet18]\nmethods: [dense]\nseeds: [0, 1, 2]\n"
        "datasets:\n  - {dataset: synthetic, data_name: small}\n"
        "  - {dataset: synthetic, name: large, image_size: 32, seeds: [5]}\n"
    )
    runs = expand_grid(load_sweep_config(path))
    assert [(r.config.data_name, r.config.seed) for r in runs] == [
        ("small", 0),
        ("small", 1),
        ("small", 2),
        ("large", 5),
    ]
    # `name:` is the entry's data_name, given once
    path.write_text(path.read_text().replace("name: large", "name: large, data_name: big"))
    with pytest.raises(InputError, match=r"datasets\[1\]: give the data's name once"):
        load_sweep_config(path)
    path.write_text(path.read_text().replace(", data_name: big", "").replace("[5]", "[5, 5]"))
    with pytest.raises(InputError, match=r"datasets\[1\]\.seeds: seeds repeat") as refused:
        load_sweep_config(path)
    assert str(path) in str(refused.value)


def test_a_model_can_train_longer_than_the_others(tmp_path):
    """`model_training` sets a model's own training settings over the sweep's; a data
    set's own still win; a model the sweep does not train is refused."""
    from sparsebench.sweep.settings import SweepConfig

    sweep = SweepConfig(
        models=["vgg16", "resnet18"],
        datasets=[{"dataset": "synthetic"}, {"dataset": "synthetic", "training": {"epochs": 3}}],
        methods=["dense"],
        training={"epochs": 30, "lr": 0.002},
        model_training={"vgg16": {"epochs": 50}},
    )
    assert sweep.run_config("vgg16", 0, "dense", None, 0).epochs == 50
    assert sweep.run_config("vgg16", 0, "dense", None, 0).lr == 0.002
    assert sweep.run_config("resnet18", 0, "dense", None, 0).epochs == 30
    assert sweep.run_config("vgg16", 1, "dense", None, 0).epochs == 3
    with pytest.raises(ValueError, match="model_training: 'resnet50' is not one of"):
        SweepConfig(
            models=["vgg16"],
            datasets=[{"dataset": "synthetic"}],
            methods=["dense"],
            model_training={"resnet50": {"epochs": 5}},
        )
