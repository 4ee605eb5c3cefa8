"""The prose of the README's "Theory on deep models" section, filled from the probe aggregates
(:func:`figures.deep_theory_text.aggregates`). Qualitative words are chosen from the numbers
(:func:`_extent`), so a regenerated section never contradicts its own figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from figures.deep_theory import DeepTheoryResult
from figures.deep_theory_text import TABLE_TAU, num, pct


def _extent(fraction: float) -> str:
    """Words for a share of samples, as in "<words> of the clean samples"."""
    if fraction >= 0.99:
        return "almost all"
    if fraction >= 0.8:
        return "most"
    if fraction >= 0.5:
        return "a majority, but far from all,"
    if fraction >= 0.2:
        return "a minority"
    return "almost none"


def _intro(agg: dict[str, Any], results: Sequence[DeepTheoryResult], results_dir: str) -> list[str]:
    first = results[0].data
    rounds = ", ".join(map(str, agg["rounds"]))
    return [
        "The paper's analysis is for a linear-softmax model. A network whose output layer is "
        "linear computes z = W phi~(x), with phi~(x) = [phi(x); 1] its penultimate features and a "
        "constant bias feature, so its last layer *is* that model with x replaced by phi~(x). "
        "`python -m theory.verify --deep RUN_DIR --round R` probes round R+1 of a deepfl run from "
        "its global model G_R (a checkpoint kept with `run.keep_checkpoints`, else a "
        "deterministic replay of the run), twice with identical random streams: with FLIP on the "
        "benign clients and without, the attackers poisoning as in the run. It runs that round "
        "three ways: (a) last layer only, features frozen, with the engine's SGD; (a) last layer "
        "only under the linear engine's probe protocol (one full-batch gradient step, paper "
        "convention, the closed form of THEORY.md section 2 summed over the benign clients); (b) "
        "all layers train (the engine's round itself).",
        "",
        f"Measured on {first['dataset'].upper()} `cpu-small`, {first['attack']} attack, no defense "
        "in the run (`python -m deepfl.run --preset cpu-small --attack continuous --seed S --set "
        "run.keep_checkpoints=[20,40,60] --stop-after 60`, CPU, one thread), seeds "
        f"{', '.join(map(str, agg['seeds']))}, probed rounds {rounds} ({agg['probes']} "
        f"probe{'s' if agg['probes'] != 1 else ''}; FLIP with its default parameters, inverting on "
        "G_R; the runs have no client defense, so the probe round is each benign client's first "
        "FLIP round, the cached warm-up: a universal trigger per target class plus the selected "
        "label-specific pairs, all stamped). Tables: "
        f"[`{results_dir}/deep_theory_tables.md`]({results_dir}/deep_theory_tables.md); JSON per "
        "probe beside them.",
        "",
    ]


def _ratio(agg: dict[str, Any]) -> str:
    ratios = agg["eps_B_ratio"]
    if not ratios:
        return ""
    return (
        " (where it existed, the realised max ||delta_phi||_inf was "
        f"{num(min(ratios), 2)}-{num(max(ratios), 2)} times its radius)"
    )


def _newly(agg: dict[str, Any], key: str) -> str:
    actual, jensen, theorem1 = agg["newly"][key]
    return f"{jensen} / {theorem1} of {actual}"


def _exact(agg: dict[str, Any]) -> list[str]:
    statuses = " or ".join(agg["eps_paper_status"])
    deltas = [d for d in agg["delta_phi_max"] if d is not None]
    return [
        "**What holds exactly (a).** With the features frozen, Theorem 1 holds per sample on "
        f"phi~(x): {agg['violations_sgd']} violations among {agg['samples_sgd']:,} clean and "
        "backdoor samples for the engine's SGD update of the last layer (momentum, weight decay, "
        f"mini-batches, FLIP's hardening augment) and {agg['violations_protocol']} among "
        f"{agg['samples_protocol']:,} under the probe protocol; the network's float64 logits equal "
        f"W phi~ to {num(agg['logit_error_max'], 2)}, and the closed-form Delta W matches the "
        f"simulated last-layer round to {num(agg['deltaW_rel_error_max'], 2)} relative. Theorem 2 "
        "in the stacked frozen-residual model (rigorous for the realised round): the paper's "
        f"eps_P is {statuses} in every probe; the sign certificate's premise (the target logit "
        f"drops most on every backdoor sample) held in {agg['premise_A']} of {agg['probes']} "
        "probes and the Jensen certificate existed (LB^J_b(0) > 0) in "
        f"{agg['has_eps_B']}{_ratio(agg)}; the realised error was inside a radius in "
        f"{agg['certified']} of {agg['probes']}. Corollary 1 at tau = {TABLE_TAU:g}, summed over "
        "the probes: of the backdoor samples the hardening newly neutralised, the Jensen / "
        f"Theorem-1 brackets certified {_newly(agg, 'last_layer_sgd')} (engine SGD) and "
        f"{_newly(agg, 'last_layer_protocol')} (probe protocol); certified <= actual always.",
        "",
        "*Feature-space trigger error.* Theorem 2's delta lives in input space; the certificate "
        "lives in feature space. For every hardening pair of the probe (a local sample x of a "
        "benign client from a source class of one of FLIP's stamping directions, and one of that "
        "direction's inverted triggers t^ - FLIP's Neural-Cleanse inversion of `deepfl/flip` run "
        "by that client on G_R, after the mask-size filter) delta_phi = phi(stamp(x, t^)) - "
        "phi(stamp(x, t_true)), with phi the penultimate features of G_R (float64) and t_true the "
        "full test trigger; its infinity norm is taken over the feature coordinates (the bias "
        "feature is never perturbed), and the certificates are compared with the maximum over all "
        "pairs (per-sample error model, THEORY.md 6.5). That maximum ranged over "
        f"{num(min(deltas))}-{num(max(deltas))} across the probes (delta_phi is never zero: the "
        "inverted triggers of FLIP's natural-class directions are nothing like the true one).",
        "",
    ]


def _carry(agg: dict[str, Any]) -> list[str]:
    lines = [
        "**How far it carries (b).** When all layers train, the last-layer bracket (Theorem 1 "
        "with u = (W' - W) phi~ at the no-defense model's features) no longer has to hold. Share "
        "of samples whose actual loss change lies inside it (mean over seeds, min-max in "
        "brackets):",
        "",
        "| probed round R | clean | backdoor |",
        "|---|---|---|",
    ]
    for rnd, parts in agg["inside"].items():
        cells = [
            f"{pct(mean)}% ({pct(low)}-{pct(high)})"
            for mean, low, high in (parts[s] for s in ("clean", "backdoor"))
        ]
        lines.append(f"| {rnd} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def _verdict(agg: dict[str, Any], results_dir: str) -> list[str]:
    clean = min(parts["clean"][0] for parts in agg["inside"].values())
    backdoor_by_round = [parts["backdoor"][0] for parts in agg["inside"].values()]
    backdoor, backdoor_high = min(backdoor_by_round), max(backdoor_by_round)
    low, high = agg["full_backdoor_actual_range"]
    if backdoor < 0.5:
        conclusion = (
            "So the linear analysis explains FLIP's effect on the CNN's output layer exactly, but "
            "not FLIP's effect on the CNN: in the rounds where the bracket misses most backdoor "
            "samples, what it leaves out, the motion of the features, is what moves their loss."
        )
    else:
        conclusion = (
            "So on these rounds the last-layer analysis brackets most of FLIP's effect on the "
            "CNN, though nothing in the theorems guarantees it when the features move."
        )
    return [
        "**What this says about the paper's claim.** The paper argues that its linear analysis "
        "explains FLIP on CNNs. On the last layer with the features frozen it is exact, not an "
        "approximation: every bound holds on every sample, and the closed form is the round. It "
        "does not carry over by itself to a real round, in which the features move too: the "
        f"last-layer bracket holds for {_extent(clean)} of the clean samples (at least "
        f"{pct(clean)}% on average in every probed round) and for {pct(backdoor)}% to "
        f"{pct(backdoor_high)}% of the backdoor samples on average, depending on the probed round "
        f"(table above). In the full round FLIP changed the mean backdoor loss by {{num(low)}} to "
        f"{{num(high)}} nats across the probes (positive: the backdoor loses). " + conclusion,
        "",
        f"![Theorem 1 on the last layer over rounds]({results_dir}/deep_loss_bounds.png)",
        f"![Per-sample bracket vs actual loss change]({results_dir}/deep_scatter.png)",
    ]


def section_lines(
    agg: dict[str, Any], results: Sequence[DeepTheoryResult], results_dir: str
) -> list[str]:
    """All lines of the section (without the markers)."""
    return (
        _intro(agg, results, results_dir) + _exact(agg) + _carry(agg) + _verdict(agg, results_dir)
    )
