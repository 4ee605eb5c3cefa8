"""The params of a run's named components, checked when the config is resolved (no data read yet).

A run names three components: the server defense (``defense.server``, deepfl.defenses.REGISTRY),
the client defense (``defense.client``, deepfl.client.CLIENT_DEFENSES) and the attacker behaviour
(``attack.behaviour``, deepfl.client.ATTACKER_BEHAVIOURS). Each declares its constructor params'
constraints once (``parameter_constraints``, :mod:`fldata.params`), so ``defense.params``,
``defense.client_params`` and ``attack.behaviour_params`` are checked here, without building
anything. So are the rules that involve the rest of the config:

* a server defense's conditions on ``n`` = ``server.clients_per_round`` and ``f`` =
  ``defense.assumed_attackers`` (else the attackers per attack round): Krum's ``n >= f + 3``,
  Bulyan's ``n >= 4f + 3``, ... (``Aggregator.check_setting``, the same functions the rules run);
* a component that needs the attack's true trigger (FLIP's ground-truth oracle) gets one: the
  engine hands it only to a client defense, and only in a run with an attack.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fldata.params import ConfigError, check_params

if TYPE_CHECKING:
    from deepfl.config import ExperimentConfig

__all__ = ["assumed_attackers", "checked_component_params"]


Params = dict[str, Any]


def checked_component_params(cfg: ExperimentConfig) -> tuple[Params, Params, Params]:
    """``(defense.params, defense.client_params, attack.behaviour_params)`` checked, normalised.

    Raises:
        ConfigError: an unknown or bad param (named by its dotted key), or a setting the
            selected component cannot run with.
    """
    return _server_defense_params(cfg), _client_defense_params(cfg), _attacker_params(cfg)


def assumed_attackers(cfg: ExperimentConfig) -> tuple[int, str]:
    """``f`` given to the server defense, and the config key it comes from."""
    if cfg.defense.assumed_attackers >= 0:
        return cfg.defense.assumed_attackers, "defense.assumed_attackers"
    return cfg.attackers_per_round, "the attackers per attack round"


def _server_defense_params(cfg: ExperimentConfig) -> Params:
    from deepfl.defenses import REGISTRY

    name = cfg.defense.server
    params = _named_params(
        REGISTRY,
        name,
        cfg.defense.params,
        "defense.server",
        "defense.params",
        exclude=("num_attackers",),
    )
    if cfg.run.rounds > cfg.run.pretrain_rounds:  # the defense aggregates the attack-phase rounds
        num_attackers, source = assumed_attackers(cfg)
        num_rows = cfg.server.clients_per_round
        cls = REGISTRY[name]
        try:
            cls.check_setting(num_rows, num_attackers, {**cls.default_params(), **params})
        except ValueError as error:
            raise ConfigError(
                f"defense.server={name!r} cannot aggregate server.clients_per_round={num_rows} "
                f"updates with f={num_attackers} ({source}): {error}"
            ) from None
    return params


def _client_defense_params(cfg: ExperimentConfig) -> Params:
    from deepfl.client import CLIENT_DEFENSES

    params = _named_params(
        CLIENT_DEFENSES,
        cfg.defense.client,
        cfg.defense.client_params,
        "defense.client",
        "defense.client_params",
    )
    # the engine hands the true trigger to a client defense only when there is an attack
    _check_true_trigger(
        CLIENT_DEFENSES[cfg.defense.client],
        params,
        "defense.client_params",
        handed_over=cfg.attack.kind != "none",
    )
    return params


def _attacker_params(cfg: ExperimentConfig) -> Params:
    from deepfl.client import ATTACKER_BEHAVIOURS

    name = cfg.attack.behaviour
    params = _named_params(
        ATTACKER_BEHAVIOURS,
        name,
        cfg.attack.behaviour_params,
        "attack.behaviour",
        "attack.behaviour_params",
    )
    _check_true_trigger(
        ATTACKER_BEHAVIOURS[name], params, "attack.behaviour_params", handed_over=False
    )
    # the adaptive attacker (App. A.3) inverts with the run's FLIP clients' config
    required = getattr(ATTACKER_BEHAVIOURS[name], "client_defense_required", None)
    if required is not None and cfg.defense.client != required:
        raise ConfigError(
            f"attack.behaviour={name!r} needs defense.client={required!r} (it inverts with the "
            f"run's client-defense config); got defense.client={cfg.defense.client!r}"
        )
    return params


def _named_params(
    registry: Mapping[str, Any],
    name: str,
    params: Mapping[str, Any],
    selector: str,
    key: str,
    exclude: tuple[str, ...] = (),
) -> Params:
    """``params`` checked against the declaration of ``registry[name]`` (chosen by ``selector``)."""
    component = registry[name]
    given = [param for param in params if param in exclude]
    if given:
        raise ConfigError(
            f"{key}.{given[0]} is set by the config, not in {key}; remove it (for a server "
            "defense's f: defense.assumed_attackers)"
        )
    allowed = [param for param in component.parameter_constraints if param not in exclude]
    if params and not allowed:
        raise _takes_no_params(registry, name, params, selector, key, exclude)
    return check_params(
        component, params, prefix=f"{key}.", where=f"{key} of {selector}={name!r}", exclude=exclude
    )


def _takes_no_params(
    registry: Mapping[str, Any],
    name: str,
    params: Mapping[str, Any],
    selector: str,
    key: str,
    exclude: tuple[str, ...],
) -> ConfigError:
    """The error for params given to a component without any; points to the component that has
    the closest-named param (``warmup_steps`` -> ``defense.client='flip'``)."""
    unknown = str(next(iter(params)))
    owners: dict[str, str] = {}
    for other in registry:
        try:
            declared = getattr(registry[other], "parameter_constraints", {})
        except ValueError:  # a lazily imported component that is not available
            continue
        for param in declared:
            if param not in exclude:
                owners.setdefault(param, other)
    close = difflib.get_close_matches(unknown, list(owners), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    message = f"unknown key {unknown!r}{hint} in {key}: {selector}={name!r} takes no parameters"
    if close:
        message += f"; {close[0]!r} is a parameter of {selector}={owners[close[0]]!r}"
    return ConfigError(message)


def _check_true_trigger(
    component: Any, params: Mapping[str, Any], key: str, handed_over: bool
) -> None:
    """Refuse params that need the attack's true trigger when the engine will not hand it over.

    A component that may need it says why through ``true_trigger_need(params) -> str | None``.
    """
    need = getattr(component, "true_trigger_need", None)
    reason = need(params) if need is not None and not handed_over else None
    if reason:
        raise ConfigError(
            f"{key}: {reason} needs the attack's true trigger, which the engine hands over only to "
            "a client defense in a run with an attack"
        )
