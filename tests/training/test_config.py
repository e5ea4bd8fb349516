"""A run's config and its net: every net builds for its dataset's image shape and classes, a net
that does not fit is one line, and the new options leave existing run names alone."""
from __future__ import annotations

import pytest

from test_registry import registry_restored
from ticketlab.cli import main
from ticketlab.core.errors import TicketlabError
from ticketlab.data import load_dataset, register_dataset
from ticketlab.store.naming import identity, run_name
from ticketlab.training.config import TrainConfig, net_fits


@pytest.mark.parametrize("net, dataset, first_dense_in, image_shape", [
    ("fc", "fashion-mnist", 784, (1, 28, 28)),
    ("fc", "cifar10", 3072, (3, 32, 32)),
    ("conv2", "fashion-mnist", 64 * 14 * 14, (1, 28, 28)),
    ("conv4", "fashion-mnist", 128 * 7 * 7, (1, 28, 28)),
    ("conv6", "fashion-mnist", 256 * 3 * 3, (1, 28, 28)),  # 28 -> 14 -> 7 -> 3 (floor, as torch pools)
    ("conv6", "cifar10", 256 * 4 * 4, (3, 32, 32)),
    ("resnet20", "fashion-mnist", 64, (1, 28, 28)),
    ("vgg16", "mnist", 512, (1, 28, 28)),
])
def test_every_net_builds_for_its_datasets_images(net, dataset, first_dense_in, image_shape):
    config = TrainConfig(net=net, dataset=dataset, iterations=10)
    config.validate()
    spec = config.net_spec()
    assert spec.image_shape == image_shape and spec.layers[0].fan_in_channels == (
        784 if net == "fc" and dataset != "cifar10" else 3072 if net == "fc" else image_shape[0])
    assert next(l for l in spec.layers if l.kind == "fc").fan_in_channels == first_dense_in
    assert spec.layers[-1].out_channels == spec.classes == 10


def test_a_net_that_does_not_fit_its_dataset_is_one_line(capsys, tmp_path):
    with registry_restored():
        register_dataset("toy-6x6", lambda data_dir, download: load_dataset("mnist"), (1, 6, 6), train_size=600)
        assert net_fits("conv2", "toy-6x6") and net_fits("resnet20", "toy-6x6") and not net_fits("conv6", "toy-6x6")
        with pytest.raises(TicketlabError, match=r"^--net vgg16 does not fit dataset toy-6x6 \(6x6x1 images\): its 4 2x2 "
                                                 r"max-pools need images of at least 16x16 pixels; choose another net or "
                                                 r"dataset$"):
            TrainConfig(net="vgg16", dataset="toy-6x6").validate()
        assert main(["train", "--net", "conv6", "--dataset", "toy-6x6", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "conv6 does not fit dataset toy-6x6 (6x6x1 images): its 3 2x2 max-pools" in err
    assert not (tmp_path / "o").exists()


def test_new_fields_at_their_defaults_leave_run_names_unchanged():
    assert identity(TrainConfig(augment="none")) == identity(TrainConfig()) == {"net": "fc"}
    assert run_name("train", identity(TrainConfig(augment="crop_flip"))) != run_name("train", identity(TrainConfig()))
    assert identity(TrainConfig(net="resnet20", augment="crop_flip"))["augment"] == "crop_flip"
    assert TrainConfig(augment="crop_flip").schedule().recipe.augment == "crop_flip"
