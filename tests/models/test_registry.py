import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import facelift.models as models
from facelift.errors import WeightsError
from facelift.models import DRN, FAN, MODEL_CLASSES, BNet, PatchGAN, create_model, list_models, load_model


def test_names():
    assert list_models() == ["bnet", "drn", "fan", "patchgan"]
    assert MODEL_CLASSES == {"bnet": BNet, "drn": DRN, "fan": FAN, "patchgan": PatchGAN}
    assert all(cls.model_type == name for name, cls in MODEL_CLASSES.items())


@pytest.mark.parametrize("name", ["drn", "fan", "patchgan"])
def test_create_model(name):
    config = {"ndf": 4} if name == "patchgan" else {"resolution": 128, "ngf": 4}
    model = create_model(name, **config)
    assert type(model) is MODEL_CLASSES[name]
    assert all(model.config[k] == v for k, v in config.items())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())


def test_create_bnet():
    model = create_model("bnet", resolution=128, n_albedo=80)
    assert isinstance(model, BNet) and model.fc.out_features == 80 + 27


def test_create_model_errors():
    with pytest.raises(ValueError, match="unknown model 'unet'.*bnet, drn, fan, patchgan"):
        create_model("unet")
    with pytest.raises(ValueError, match="resolution"):
        create_model("fan", resolution=100)
    with pytest.raises(TypeError):
        create_model("patchgan", resolution=128)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("fan")(FAN)


@pytest.fixture
def saved_fan(tmp_path):
    path = tmp_path / "fan"
    FAN(resolution=128, ngf=4).save_pretrained(path)
    return path


def test_saved_files(saved_fan):
    config = json.loads((saved_fan / "config.json").read_text())
    assert config == {"_class_name": "FAN", "resolution": 128, "in_channels": 3, "out_channels": 3, "ngf": 4,
                      "flip_features": True, "output_activation": "sigmoid", "max_rate": 0.004}
    assert {p.name for p in saved_fan.iterdir()} >= {"config.json", "model.safetensors"}
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in saved_fan.iterdir())


def test_load_model_dispatches_on_class_name(saved_fan):
    model = load_model(saved_fan)
    assert type(model) is FAN and model.config["ngf"] == 4


def test_from_pretrained_overrides(saved_fan):
    model = FAN.from_pretrained(saved_fan, output_activation="tanh", max_rate=0.01)
    assert model.config["resolution"] == 128 and model.config["max_rate"] == 0.01


def test_missing_directory(tmp_path):
    with pytest.raises(WeightsError, match="does-not-exist"):
        FAN.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(WeightsError, match="does-not-exist"):
        load_model(tmp_path / "does-not-exist")


def test_missing_files(saved_fan):
    (saved_fan / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="model.safetensors"):
        FAN.from_pretrained(saved_fan)
    (saved_fan / "config.json").unlink()
    with pytest.raises(WeightsError, match="config.json"):
        FAN.from_pretrained(saved_fan)


def test_pickle_weights_are_never_read(saved_fan):
    torch.save(FAN(resolution=128, ngf=4).state_dict(), saved_fan / "pytorch_model.bin")
    (saved_fan / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="model.safetensors"):
        FAN.from_pretrained(saved_fan)


def test_wrong_class(saved_fan):
    with pytest.raises(WeightsError, match="holds a FAN.*PatchGAN"):
        PatchGAN.from_pretrained(saved_fan)


def test_invalid_config(saved_fan):
    config_file = saved_fan / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "resolution": 100}))
    with pytest.raises(WeightsError, match="resolution"):
        FAN.from_pretrained(saved_fan)
    config_file.write_text("{not json")
    with pytest.raises(WeightsError, match="config.json"):
        FAN.from_pretrained(saved_fan)


def test_config_that_does_not_match_the_weights(saved_fan):
    config_file = saved_fan / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "ngf": 8}))
    with pytest.raises(WeightsError, match="shape"):
        FAN.from_pretrained(saved_fan)
    config_file.write_text(json.dumps({**config, "flip_features": False}))
    with pytest.raises(WeightsError, match="model.safetensors"):
        FAN.from_pretrained(saved_fan)


def test_missing_and_unexpected_tensors(saved_fan):
    weights = saved_fan / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({**tensors, "extra.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(WeightsError, match="extra.weight"):
        FAN.from_pretrained(saved_fan)
    del tensors["model.model.0.weight"]
    save_file(tensors, str(weights))
    with pytest.raises(WeightsError, match=r"model\.model\.0\.weight"):
        FAN.from_pretrained(saved_fan)


def test_corrupted_weights(saved_fan):
    (saved_fan / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="model.safetensors"):
        FAN.from_pretrained(saved_fan)
