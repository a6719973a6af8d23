"""Typed configs, YAML and --set overrides."""
import pytest

from dhmrec_pyg.models import LightGCNConfig
from dhmrec_pyg.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    dump_config,
    load_yaml_config,
)


def test_overrides_route_to_model_and_train():
    cfg, model = apply_overrides(
        TrainConfig(), {}, LightGCNConfig,
        ["num_layers=3", "reg_weight=1e-4", "lr=0.0005", "train.patience=5", "ks=[10,20]", "progress=false"],
    )
    assert model.num_layers == 3 and model.reg_weight == 1e-4
    assert cfg.lr == 0.0005 and cfg.patience == 5 and cfg.ks == [10, 20] and cfg.progress is False


@pytest.mark.parametrize(
    "pair, message",
    [
        ("num_layers=two", "'num_layers' expects a value of type int, got 'two'"),
        ("lr=fast", "'lr' expects a value of type float, got 'fast'"),
        ("nosuch=1", "unknown option 'nosuch'"),
        ("model.lr=1", "the model has no option 'lr'"),
        ("novalue", "--set expects key=value, got 'novalue'"),
        ("x.lr=1", "section must be 'train', 'model' or 'graph', got 'x'"),
    ],
)
def test_bad_overrides_name_key_and_value(pair, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainConfig(), {}, LightGCNConfig, [pair])
    assert message in str(err.value)


def test_yaml_roundtrip(tmp_path):
    cfg, model = apply_overrides(TrainConfig(), {}, LightGCNConfig, ["num_layers=4"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg, model))
    raw = load_yaml_config(path)
    assert raw["model"]["num_layers"] == 4 and raw["train"]["lr"] == 1e-3
    bad = tmp_path / "bad.yaml"
    bad.write_text("oops: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_yaml_config(tmp_path / "missing.yaml")
