import pytest
from test_train import small_config, without_measurements

from sparsebench.data.synthetic import make_synthetic
from sparsebench.errors import InputError
from sparsebench.train import train_run
from sparsebench.train.derive import derivable_from, derive_post_run
from sparsebench.train.loop import RunInterrupted


@pytest.mark.parametrize(("model", "scenario"), [("resnet18", "mixed"), ("vgg16", "uniform")])
def test_post_derived_from_dense_equals_post_trained(tmp_path, model, scenario):
    data = make_synthetic()
    dense = small_config(model=model, method="dense", epochs=2)
    post = small_config(model=model, method="post", scenario=scenario, epochs=2)
    trained = train_run(post, data, tmp_path / "post-trained.pt")
    train_run(dense, data, tmp_path / "dense.pt")
    derived = derive_post_run(post, dense, data, tmp_path / "dense.pt", tmp_path / "post.pt")
    assert derived.run_id == post.run_id()
    assert without_measurements(derived.epochs) == without_measurements(trained.epochs)
    assert without_measurements([derived.test]) == without_measurements([trained.test])
    assert derived.layers == trained.layers
    assert derived.sparsity_by_kind["linear"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("retrain", ["lr-rewind", "finetune"])
def test_post_retrained_from_dense_equals_post_trained(tmp_path, retrain):
    """Retraining after pruning goes on from the dense run's checkpoint: the same epochs,
    on the recommended recipe (a schedule, augmentation), as training it whole."""
    data = make_synthetic()
    options = {"retrain": retrain, "fine_tune_epochs": 2}
    dense = small_config(method="dense", epochs=2, preset="recommended")
    post = small_config(
        method="post", scenario="mixed", epochs=2, preset="recommended", method_options=options
    )
    assert derivable_from(post, dense)
    trained = train_run(post, data, tmp_path / "post-trained.pt")
    train_run(dense, data, tmp_path / "dense.pt")
    derived = derive_post_run(post, dense, data, tmp_path / "dense.pt", tmp_path / "post.pt")
    assert len(derived.epochs) == 4
    assert without_measurements(derived.epochs) == without_measurements(trained.epochs)
    assert without_measurements([derived.test]) == without_measurements([trained.test])
    assert derived.test_best_val.epoch == trained.test_best_val.epoch >= 2


def test_only_post_without_fine_tuning_on_the_same_training_is_derivable():
    dense = small_config(method="dense")
    assert derivable_from(small_config(method="post", scenario="uniform"), dense)
    assert not derivable_from(small_config(method="post", fine_tune_epochs=1), dense)
    assert not derivable_from(small_config(method="post", lr=1e-2), dense)
    assert not derivable_from(small_config(method="post", seed=7), dense)
    assert not derivable_from(small_config(method="set"), dense)


def test_deriving_from_an_unfinished_dense_run_is_refused(tmp_path):
    data = make_synthetic()
    dense = small_config(method="dense", epochs=2)
    with pytest.raises(RunInterrupted):
        train_run(dense, data, tmp_path / "dense.pt", stop_after_epoch=0)
    post = small_config(method="post", epochs=2)
    with pytest.raises(InputError, match="trained 1 of 2 epochs"):
        derive_post_run(post, dense, data, tmp_path / "dense.pt", tmp_path / "post.pt")
    with pytest.raises(InputError, match="no checkpoint"):
        derive_post_run(post, dense, data, tmp_path / "absent.pt", tmp_path / "post.pt")
