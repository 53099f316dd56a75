"""``bgs-simulate OUT_DIR [options]``: the command line of the study simulator."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bgs_app import __version__
from bgs_app.simulate.deform import EFFECT_KINDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        print(f"bgs-simulate: error: {message}", file=sys.stderr)
        raise SystemExit(64)


def get_parser() -> argparse.ArgumentParser:
    """The ``bgs-simulate`` argument parser."""
    p = _Parser(prog="bgs-simulate", description=(
        "Write a BIDS imaging-genetics study in which chosen SNPs change brain anatomy in "
        "known patterns that drive cognition, with its ground truth under "
        "OUT_DIR/derivatives/simulation-truth/."))
    p.add_argument("out_dir", type=Path, help="the new BIDS dataset's folder")
    p.add_argument("--version", action="version", version=f"bgs-simulate v{__version__}")
    g = p.add_argument_group("Study")
    g.add_argument("--n-subjects", type=int, default=200, help="participants (default 200)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--cohort", type=int, default=0,
                   help="another cohort of the same design (same SNPs and effects as "
                        "--seed, new participants): a second site (default 0)")
    g.add_argument("--sessions", type=int, default=1,
                   help="sessions per participant; >1 writes rescans (default 1)")
    g.add_argument("--resolution", type=float, default=1.0,
                   help="multiplies the sites' native voxel sizes (default 1: ~1 mm scans; "
                        "2 or 3 make small, fast test studies)")
    e = p.add_argument_group("Genetic effects")
    e.add_argument("--n-snps", type=int, default=12,
                   help="SNPs that pass QC, causal included (default 12; four QC failures "
                        "are added)")
    e.add_argument("--n-causal", type=int, default=4, help="causal SNPs (default 4; 0: null)")
    e.add_argument("--effect-size", type=float, nargs="+", default=[20.0], metavar="PERCENT",
                   help="volume change per allele in percent at the effect centres: one value "
                        "for all causal SNPs or one per causal SNP; the causal SNPs "
                        "alternate expansion and contraction, and a negative value turns "
                        "its SNP's direction over (default 20)")
    e.add_argument("--cognition-effect", type=float, default=0.5,
                   help="standardised effect of a driving region's volume on a cognitive "
                        "measure (default 0.5)")
    e.add_argument("--confound-strength", type=float, default=0.0,
                   help="standardised effect on every measure of a non-genetic anatomical "
                        "component (varies between people, tied to no SNP, overlapping "
                        "the causal regions); 0: none (default). With --cognition-effect 0 "
                        "the study is a confounded null")
    e.add_argument("--confound-size", type=float, default=30.0, metavar="PERCENT",
                   help="volume change of that component per SD of its amplitude, in "
                        "percent (default 30)")
    e.add_argument("--cognition-r2", type=float, metavar="R2",
                   help="share of each measure's variance explained by anatomy (e.g. "
                        "0.02-0.2); default: as --cognition-effect gives it")
    e.add_argument("--warp-mm", type=float, default=2.5,
                   help="RMS of the individual nonlinear anatomy in mm (default 2.5)")
    e.add_argument("--atlas-region", default="Left_Hippocampus",
                   help="Harvard-Oxford region of the atlas-aligned effect")
    e.add_argument("--effect-kinds", nargs="+", choices=EFFECT_KINDS, metavar="KIND",
                   help="per causal SNP (one for all, or one each): atlas (the volume of "
                        "--atlas-region changes), blobs (three Gaussian blobs), shape (a "
                        "boundary of --shape-region moves at constant volume) or pattern "
                        "(alternating expansion and contraction inside --pattern-region, "
                        "finer than the atlas); default: the first atlas, the others blobs")
    e.add_argument("--shape-region", default="Right_Thalamus",
                   help="Harvard-Oxford region of the shape effect")
    e.add_argument("--pattern-region", default="Left_Putamen",
                   help="Harvard-Oxford region of the fine-pattern effect")
    e.add_argument("--pattern-wavelength", type=float, default=12.0, metavar="MM",
                   help="period of the fine pattern in mm (default 12)")
    e.add_argument("--genotypes-from", metavar="PLINK_PREFIX",
                   help="use real genotypes from this PLINK 1 fileset")
    e.add_argument("--causal-snps", nargs="+", metavar="RSID",
                   help="with --genotypes-from: the causal SNPs")
    c = p.add_argument_group("Cohort genetics")
    c.add_argument("--sibships", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of participants in sibling pairs (genotypes identical by "
                        "descent, half of the individual anatomy shared; their KING table "
                        "is written as genetics/study.kin0; default 0)")
    c.add_argument("--ancestries", type=int, default=1,
                   help="populations (default 1); each beyond the first has its own allele "
                        "frequencies, head shape and cognition")
    c.add_argument("--fst", type=float, default=0.1,
                   help="differentiation of the populations (Balding-Nichols; default 0.1)")
    c.add_argument("--ancestry-shape", type=float, default=10.0, metavar="PERCENT",
                   help="volume change of a non-reference ancestry's anatomy (default 10)")
    c.add_argument("--ancestry-cognition", type=float, default=0.3, metavar="SD",
                   help="shift of every measure in a non-reference ancestry (default 0.3)")
    c.add_argument("--panel-snps", type=int, default=0,
                   help="genome-wide-like SNPs written beside the analysed ones, for "
                        "genetic PCs and kinship (default 0; a few thousand for PCs)")
    c.add_argument("--imputation-noise", type=float, default=0.0,
                   help="genotype uncertainty: each call keeps 1 - e of its probability, "
                        "e ~ U(0, 2 x noise) (default 0: hard calls)")
    c.add_argument("--genotype-format", choices=["bed", "pgen", "bgen"], default="bed",
                   help="PLINK 1 (hard calls), PLINK 2 (dosages) or BGEN 1.2 "
                        "(probabilities) (default bed)")
    o = p.add_argument_group("Other")
    o.add_argument("--nprocs", type=int, default=1, help="participants in parallel")
    o.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it exists")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``bgs-simulate``; return the exit code."""
    from bgs_app.simulate.study import SimulationParams, simulate_study

    args = get_parser().parse_args(argv)
    problems = []
    if args.n_subjects < 1:
        problems.append("--n-subjects must be at least 1")
    if not 0 <= args.n_causal <= args.n_snps:
        problems.append("--n-causal must be between 0 and --n-snps")
    if args.sessions < 1:
        problems.append("--sessions must be at least 1")
    if args.cognition_r2 is not None and not 0 < args.cognition_r2 < 1:
        problems.append("--cognition-r2 must be between 0 and 1")
    if args.resolution <= 0 or args.warp_mm < 0:
        problems.append("--resolution must be positive and --warp-mm not negative")
    n_causal = args.n_causal if not args.causal_snps else len(args.causal_snps)
    if args.effect_kinds and len(args.effect_kinds) not in (1, n_causal):
        problems.append("--effect-kinds takes one value or one per causal SNP")
    if len(args.effect_size) not in (1, args.n_causal if not args.causal_snps
                                     else len(args.causal_snps)):
        problems.append("--effect-size takes one value or one per causal SNP")
    if args.genotypes_from:
        bed = Path(args.genotypes_from + ".bed")
        if not bed.is_file():
            problems.append(f"--genotypes-from: {bed} does not exist")
        if not args.causal_snps:
            problems.append("--genotypes-from needs --causal-snps")
    elif args.causal_snps:
        problems.append("--causal-snps needs --genotypes-from (simulated SNPs are chosen at "
                        "random)")
    if not 0 <= args.sibships <= 1:
        problems.append("--sibships is a fraction between 0 and 1")
    if args.ancestries < 1 or not 0 < args.fst < 1:
        problems.append("--ancestries must be at least 1 and --fst between 0 and 1")
    if args.panel_snps < 0 or not 0 <= args.imputation_noise <= 0.5:
        problems.append("--panel-snps must not be negative and --imputation-noise must be "
                        "between 0 and 0.5")
    if args.genotypes_from and (args.sibships or args.ancestries > 1 or args.panel_snps
                                or args.imputation_noise or args.genotype_format != "bed"):
        problems.append("--sibships, --ancestries, --panel-snps, --imputation-noise and "
                        "--genotype-format simulate genotypes: they do not combine with "
                        "--genotypes-from")
    out = args.out_dir
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            problems.append(f"{out} exists and is not empty; choose a new folder or pass "
                            "--overwrite")
    if problems:
        for problem in problems:
            print(f"bgs-simulate: error: {problem}", file=sys.stderr)
        return 64
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    params = SimulationParams(
        n_subjects=args.n_subjects, seed=args.seed,
        n_snps=args.n_snps if not args.causal_snps else max(args.n_snps,
                                                            len(args.causal_snps)),
        n_causal=args.n_causal if not args.causal_snps else len(args.causal_snps),
        effect_size=tuple(v / 100.0 for v in args.effect_size),
        cognition_effect=args.cognition_effect, resolution=args.resolution,
        sessions=args.sessions, warp_mm=args.warp_mm, atlas_region=args.atlas_region,
        genotypes_from=args.genotypes_from,
        causal_snps=tuple(args.causal_snps) if args.causal_snps else None,
        cohort=args.cohort, confound_strength=args.confound_strength,
        confound_size=args.confound_size / 100.0, cognition_r2=args.cognition_r2,
        sibships=args.sibships, ancestries=args.ancestries, fst=args.fst,
        ancestry_shape=args.ancestry_shape / 100.0,
        ancestry_cognition=args.ancestry_cognition, panel_snps=args.panel_snps,
        imputation_noise=args.imputation_noise, genotype_format=args.genotype_format,
        effect_kinds=tuple(args.effect_kinds) if args.effect_kinds else None,
        shape_region=args.shape_region, pattern_region=args.pattern_region,
        pattern_wavelength=args.pattern_wavelength)
    try:
        truth = simulate_study(out, params, nprocs=args.nprocs, progress=not args.quiet)
    except ValueError as err:
        print(f"bgs-simulate: error: {err}", file=sys.stderr)
        return 1
    print(f"bgs-simulate: wrote {params.n_subjects} participants to {out} "
          f"(causal SNPs: {', '.join(truth['causal_snps']) or 'none'}; truth in "
          f"{out / 'derivatives' / 'simulation-truth'})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
