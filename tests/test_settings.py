"""Each run setting is declared once (RunConfig, its data settings, each loader's and
method's options model) and is from there a `train` flag, a YAML key of run configs and
sweeps, and a validation error."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.coco import CocoOptions
from sparsebench.data.elpv import ElpvOptions
from sparsebench.data.options import DataOptions
from sparsebench.data.settings import data_options_of
from sparsebench.data.visa import VisaOptions
from sparsebench.errors import InputError
from sparsebench.settings.reading import load_run_config
from sparsebench.sweep.settings import load_sweep_config
from sparsebench.train import RunConfig

runner = CliRunner()


def _train_options() -> dict[str, str]:
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    return {opt: param.help or "" for param in command.params for opt in param.opts}


def test_every_run_setting_is_a_train_flag_with_the_fields_help():
    options = _train_options()
    for name, field in RunConfig.model_fields.items():
        if (field.json_schema_extra or {}).get("flag") is False:  # computed, never typed
            assert "--" + name.replace("_", "-") not in options
            continue
        pairs = {"method_options": "--method-option", "data_options": "--data-option"}
        flag = pairs.get(name, "--" + name.replace("_", "-"))
        assert flag in options, name
        if name not in pairs:
            assert field.description in options[flag]


def test_every_loaders_own_setting_is_a_train_flag_into_its_data_options(tmp_path, monkeypatch):
    options = _train_options()
    for own in (CocoOptions, VisaOptions, ElpvOptions):
        for name, field in own.model_fields.items():
            assert field.description in options["--" + name.replace("_", "-")]
    given = {}

    def load_run_config(path, **settings):
        given.update(settings)
        raise InputError("settings read")

    monkeypatch.setattr("sparsebench.settings.reading.load_run_config", load_run_config)
    result = runner.invoke(
        app,
        ["train", "--dataset", "visa", "--visa-objects", "pcb1,pcb2", "--data-option", "x=1"],
    )
    assert result.stderr.strip() == "error: settings read"
    assert given["data_options"] == {"x": 1, "visa_objects": ["pcb1", "pcb2"]}


def test_a_sweep_passes_data_and_training_settings_to_its_runs(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "models: [resnet18]\n"
        "datasets:\n  - {dataset: elpv, elpv_classes: 4, subset_size: 40}\n"
        "methods: [set]\n"
        "training: {weight_decay: 0.01, conv_granularity: weight, epochs: 3}\n"
    )
    config = load_sweep_config(sweep_file).run_config("resnet18", 0, "set", "mixed", 0)
    assert (config.data_options, config.subset_size) == ({"elpv_classes": 4}, 40)
    assert (config.weight_decay, config.conv_granularity, config.epochs) == (0.01, "weight", 3)


@pytest.mark.parametrize(
    ("dataset", "flag", "value", "setting"),
    [
        ("bloodmnist", "--elpv-classes", "4", "elpv_classes"),
        ("visa", "--label-rule", "majority", "label_rule"),
        ("mvtec3d-objects", "--visa-objects", "pcb1", "visa_objects"),
    ],
)
def test_a_loaders_own_setting_on_another_data_set_is_refused(
    tmp_path, dataset, flag, value, setting
):
    db = tmp_path / "results.db"
    result = runner.invoke(
        app,
        ["train", "--dataset", dataset, "--data-path", str(tmp_path), flag, value, "--db", str(db)],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {setting} is not a setting of data set {dataset!r}")
    assert not db.exists()


def test_a_loaders_own_setting_at_its_default_is_accepted_anywhere():
    # A stored config of any release lists every setting with its value.
    config = RunConfig(dataset="bloodmnist", elpv_classes=2, label_rule="first")
    assert config.run_id() == RunConfig(dataset="bloodmnist").run_id()


def test_a_loaders_own_setting_is_checked_by_its_options_model(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: elpv\nelpv_classes: 3\n")
    with pytest.raises(InputError, match=r"run.yaml: elpv_classes: Input should be 2 or 4"):
        load_run_config(config)


def test_a_sweeps_data_entry_is_checked_by_the_loaders_options(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "models: [resnet18]\n"
        "datasets:\n  - {dataset: synthetic}\n  - {dataset: bloodmnist, label_rule: majority}\n"
        "methods: [dense]\n"
    )
    with pytest.raises(InputError, match=r"datasets\[1\]: label_rule is not a setting of"):
        load_sweep_config(sweep_file)


def test_a_stored_config_without_later_settings_gives_their_defaults():
    # A first-release row: no max_image_pixels, allow_external_paths or granularities.
    stored = {"dataset": "elpv", "elpv_classes": 4, "image_size": 32, "seed": 3}
    options = data_options_of(stored)
    assert (options.own(ElpvOptions).elpv_classes, options.image_size, options.seed) == (4, 32, 3)
    assert options.allow_external_paths is False
    assert options.max_image_pixels == DataOptions().max_image_pixels


def test_a_data_set_entry_overrides_the_sweeps_training_for_its_runs(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "models: [resnet18]\n"
        "datasets:\n"
        "  - {dataset: synthetic}\n"
        "  - {dataset: elpv, training: {epochs: 30, lr: 0.003}}\n"
        "methods: [dense]\n"
        "training: {epochs: 8, lr: 0.001, batch_size: 32}\n"
    )
    sweep = load_sweep_config(sweep_file)
    large = sweep.run_config("resnet18", 0, "dense", None, 0)
    small = sweep.run_config("resnet18", 1, "dense", None, 0)
    assert (large.epochs, large.lr, large.batch_size) == (8, 0.001, 32)
    assert (small.epochs, small.lr, small.batch_size) == (30, 0.003, 32)
    sweep_file.write_text(
        "models: [resnet18]\ndatasets: [{dataset: elpv, training: {epochs: 0}}]\nmethods: [dense]\n"
    )
    with pytest.raises(InputError, match=r"datasets\[0\]\.training\.epochs: Input should be"):
        load_sweep_config(sweep_file)
