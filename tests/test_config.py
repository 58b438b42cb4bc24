"""Configs are validated on load: a typo must be an error, never a silent default."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscope.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_load(name: str) -> None:
    """Every shipped config, and for an ensemble every member config it names, loads as written."""
    config = load_config(REPO / "configs" / f"{name}.yaml")
    assert config.name == name
    for chain in config.ensemble.members if config.ensemble else []:
        assert [load_config(REPO / path).name for path in chain] == [Path(path).stem for path in chain]


def test_baseline_is_the_imbalanced_plain_cnn_and_improved_fixes_it() -> None:
    baseline = load_config(REPO / "configs" / "baseline.yaml")
    improved = load_config(REPO / "configs" / "improved.yaml")
    assert baseline.model.arch == "simple_cnn" and baseline.train.balance == "none"
    assert not baseline.augment.enabled
    assert improved.train.balance != "none" and improved.augment.enabled
    assert improved.model.arch != "simple_cnn"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epoch"):
        load_config(_write(tmp_path, "name: x\ntrain:\n  epoch: 3\n"))


def test_wrong_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.balance"):
        load_config(_write(tmp_path, "name: x\ntrain:\n  balance: oversample_everything\n"))
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        load_config(_write(tmp_path, "name: x\ndata:\n  val_fraction: 0.9\n"))


def test_pretrained_only_where_weights_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pretrained"):
        load_config(_write(tmp_path, "name: x\nmodel:\n  arch: simple_cnn\n  pretrained: true\n"))
    with pytest.raises(ConfigError, match=r"model\.arch"):  # only the networks the project trains
        load_config(_write(tmp_path, "name: x\nmodel:\n  arch: resnet18\n"))


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "improved.yaml", **{"train.epochs": 1})
    assert config.train.epochs == 1
    again = load_config(_write(tmp_path, config.to_yaml()))
    assert again == config
    assert isinstance(again, Config)
