"""Cognition of a simulated study: driven by the causal anatomy, age, sex and noise.

Each cognitive measure depends on the *realised* volume change in the regions of
its driving SNPs (genotype effect plus individual anatomy), never on the genotype
directly, so the causal path is genotype -> brain -> cognition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Measures in realistic units (UK Biobank-like): mean, SD, range, rounding, age slope
#: (SD per year), sex difference (SD, male minus female), description.
MEASURES = {
    "fluid_intelligence": dict(
        mean=6.0, sd=2.1, low=0, high=13, integer=True, age=-0.025, sex=0.1,
        units="score", description="Fluid intelligence: number of 13 verbal-numerical "
        "reasoning questions answered correctly in two minutes"),
    "reaction_time": dict(
        mean=560.0, sd=110.0, low=250, high=1500, integer=True, age=0.03, sex=-0.2,
        units="ms", description="Mean reaction time on the card-matching (snap) game"),
    "numeric_memory": dict(
        mean=6.6, sd=1.3, low=2, high=12, integer=True, age=-0.02, sex=0.0,
        units="digits", description="Numeric memory: longest number recalled correctly"),
}

#: Which causal SNP (by position in the list of causal SNPs) drives which measures,
#: with the standardised effect sign. The first causal SNP is the atlas-aligned one.
#: The fourth drives nothing; fluid intelligence has two drivers.
DRIVERS = {
    0: {"numeric_memory": 1.0},
    1: {"fluid_intelligence": 1.0},
    2: {"fluid_intelligence": 1.0, "reaction_time": -1.0},
}


def simulate_cognition(rng: np.random.Generator, features: pd.DataFrame, age: pd.Series,
                       sex: pd.Series, causal: list[str], signs: dict[str, float],
                       beta: float, missing_rate: float = 0.03, *,
                       confound: pd.Series | None = None, confound_strength: float = 0.0,
                       cognition_r2: float | None = None,
                       shift: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """Cognitive measures of every participant.

    Parameters
    ----------
    rng : numpy.random.Generator
    features : pandas.DataFrame
        Realised fractional volume change in each causal SNP's regions (participants x
        causal SNPs).
    age, sex : pandas.Series
        Years; ``M``/``F``.
    causal : list of str
        Causal SNPs, in the order of :data:`DRIVERS`.
    signs : dict
        Sign of each causal SNP's anatomical effect per allele (+1 expansion).
    beta : float
        Standardised effect of each driving anatomy on a measure.
    missing_rate : float
        Fraction of values set to ``n/a``.
    confound : pandas.Series, optional
        Realised volume change of the non-genetic anatomical component, per participant.
    confound_strength : float
        Its standardised effect on every measure.
    cognition_r2 : float, optional
        Share of each measure's variance explained by anatomy (the driving regions and
        the non-genetic component together): their effects are scaled to it.
    shift : pandas.Series, optional
        Per participant, a shift of every measure in SD (e.g. by ancestry).

    Returns
    -------
    table : pandas.DataFrame
        One column per measure (index: participants).
    drivers : dict
        For each measure, its driving SNPs with the standardised beta on the anatomy
        and the expected sign of the measure-dosage correlation.
    """
    zfeat = (features - features.mean()) / features.std(ddof=0).replace(0, 1)
    zage = (age - 62.5) / 10.0
    male = (sex == "M").astype(float) - 0.5
    table = {}
    drivers: dict[str, list[dict]] = {m: [] for m in MEASURES}
    for position, links in DRIVERS.items():
        if position >= len(causal) or beta == 0:
            continue
        snp = causal[position]
        for measure, direction in links.items():
            drivers[measure].append({
                "snp": snp, "beta_on_anatomy": direction * beta * signs[snp],
                "expected_sign_vs_dosage": int(np.sign(direction)),
            })
    n = len(features)
    zconf = None
    if confound is not None and confound_strength:
        zconf = ((confound - confound.mean()) / (confound.std(ddof=0) or 1.0)).reindex(
            features.index)
    for measure, spec in MEASURES.items():
        anatomy = pd.Series(0.0, index=features.index)
        explained = 0.0
        for link in drivers[measure]:
            anatomy = anatomy + link["beta_on_anatomy"] * zfeat[link["snp"]]
            explained += link["beta_on_anatomy"] ** 2
        if zconf is not None:
            anatomy = anatomy + confound_strength * zconf
            explained += confound_strength ** 2
        if cognition_r2 is not None and anatomy.std(ddof=0) > 0:
            anatomy = anatomy * np.sqrt(cognition_r2) / anatomy.std(ddof=0)
            explained = cognition_r2
        noise_sd = float(np.sqrt(max(1.0 - explained, 0.2 if cognition_r2 is None
                                     else 0.05)))
        latent = spec["age"] * 10.0 * zage + spec["sex"] * male + anatomy
        latent = latent + rng.normal(0.0, noise_sd, n)
        if shift is not None:
            latent = latent + shift.reindex(features.index).fillna(0.0)
        values = spec["mean"] + spec["sd"] * latent
        values = np.clip(values, spec["low"], spec["high"])
        if spec["integer"]:
            values = np.rint(values)
        values = pd.Series(values, index=features.index, dtype=float)
        values[rng.random(n) < missing_rate] = np.nan
        table[measure] = values.astype("Int64") if spec["integer"] else values
    return pd.DataFrame(table), drivers


def sidecar() -> dict:
    """JSON sidecar of ``phenotype/cognition.tsv``."""
    out = {"MeasurementToolMetadata": {
        "Description": "Simulated cognitive tests modelled on UK Biobank's touchscreen "
                       "battery (bgs-simulate)."}}
    for measure, spec in MEASURES.items():
        out[measure] = {"Description": spec["description"], "Units": spec["units"]}
    return out
