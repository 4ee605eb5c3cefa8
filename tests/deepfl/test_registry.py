"""deepfl.registry: one mechanism for every named component, one lookup, one error message."""

from __future__ import annotations

import pytest
from engine_fixtures import micro_config

from deepfl.client import ATTACKER_BEHAVIOURS, CLIENT_DEFENSES, NoClientDefense
from deepfl.defenses import REGISTRY, make_aggregator
from deepfl.defenses.krum import Krum
from deepfl.registry import Registry, UnavailableComponentError, UnknownNameError
from deepfl.runner import Experiment
from fldata.params import ConfigError


def test_every_component_kind_uses_the_one_registry_type() -> None:
    registries = (REGISTRY, CLIENT_DEFENSES, ATTACKER_BEHAVIOURS)
    assert all(isinstance(registry, Registry) for registry in registries)
    assert REGISTRY["krum"] is Krum and CLIENT_DEFENSES["none"] is NoClientDefense
    assert "krum" in REGISTRY and "kurm" not in REGISTRY and REGISTRY.get("kurm") is None
    assert dict(REGISTRY.items())["multikrum"].name == "multikrum"


@pytest.mark.parametrize(
    "registry, name, message",
    [
        (
            REGISTRY,
            "kurm",
            "unknown server defense 'kurm' (did you mean 'krum'?); known: bulyan_krum, ",
        ),
        (
            CLIENT_DEFENSES,
            "flp",
            "unknown client defense 'flp' (did you mean 'flip'?); known: flip, none",
        ),
        (
            ATTACKER_BEHAVIOURS,
            "sneaky",
            "unknown attacker behaviour 'sneaky'; known: adaptive, standard",
        ),
    ],
)
def test_an_unknown_name_gets_one_message_and_is_a_key_and_config_error(
    registry: Registry, name: str, message: str
) -> None:
    with pytest.raises(UnknownNameError) as raised:
        registry[name]
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, KeyError) and isinstance(raised.value, ConfigError)


def test_builders_and_the_engine_look_defenses_up_through_the_registry(tmp_path) -> None:
    with pytest.raises(UnknownNameError, match="unknown server defense 'kurm'"):
        make_aggregator("kurm")
    cfg = micro_config(tmp_path)
    object.__setattr__(cfg.defense, "server", "kurm")  # bypass the config's own check
    with pytest.raises(UnknownNameError, match="unknown server defense 'kurm'"):
        Experiment(cfg, tmp_path / "run")


def test_lazy_entries_are_imported_on_lookup_and_a_missing_module_is_reported() -> None:
    registry: Registry[object] = Registry(
        "widget", {"path": "pathlib:Path", "gone": "no_such_module:Thing"}
    )
    assert "gone" in registry and list(registry) == ["path", "gone"]  # membership imports nothing
    from pathlib import Path

    assert registry["path"] is Path
    with pytest.raises(UnavailableComponentError, match="widget 'gone' needs no_such_module.Thing"):
        registry["gone"]


def test_a_name_registers_once() -> None:
    registry: Registry[type] = Registry("widget")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="widget name 'a' is already registered by int"):
        registry.register("a")(float)
    with pytest.raises(ValueError, match="server defense name 'krum' is already registered"):
        REGISTRY.add("krum", Krum)
