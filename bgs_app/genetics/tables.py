"""Writing the genotype QC tables of the group level (TSV + JSON sidecars)."""

from __future__ import annotations

from pathlib import Path

from bgs_app.genetics.api import Genotypes
from bgs_app.utils.tables import write_table

SNP_QC_COLUMNS = {
    "snp": "SNP identifier (rsID) as in the .bim file",
    "chrom": "Chromosome", "pos": "Base-pair position",
    "a1": "Counted allele (A1: .bim column 5, the .pvar ALT, or the BGEN's second allele): "
          "dosages count copies of it",
    "a2": "Other allele (A2: .bim column 6, the .pvar REF, or the BGEN's first allele)",
    "a1_freq": "Frequency of A1 among the people kept after --mind (from the dosages)",
    "call_rate": "Fraction of those people with a hard call (a dosage within 0.1 of an "
                 "integer, as plink2 --missing); --geno judges the fraction with a dosage "
                 "(as plink2 --geno dosage), the same for hard-call files",
    "hwe_p": "Hardy-Weinberg exact test p-value on the hard calls (Wigginton et al. 2005, "
             "as PLINK --hardy)",
    "info": "Imputation r² (MaCH Rsq: dosage variance over 2p(1-p), as plink2 --freq "
            "cols=+machr2); about 1 for hard calls",
    "kept": "Whether the SNP passed QC", "reason": "Why the SNP was dropped",
}
PERSON_COLUMNS = {
    "iid": "Individual ID in the .fam file (n/a: not genotyped)",
    "participant_id": "BIDS participant (n/a: genotyped but no MRI)",
    "call_rate": "Fraction of the requested SNPs with a genotype call",
    "kept": "Whether the person's genotypes were used",
    "reason": "Why the person was not used (QC, no MRI, not genotyped, or excluded by "
              "--exclude-label, --keep or --remove)",
    "family": "With --kinship: the person's family (connected relatives at the kinship "
              "threshold); a split never divides a family",
    "association_set": "With --kinship: whether the person is in the unrelated set the "
                       "associations use, and if not, the relative kept instead",
}


def write_genotype_tables(genotypes: Genotypes, group_dir: Path,
                          thresholds: dict[str, float | None],
                          relatives: dict | None = None) -> tuple[Path, Path]:
    """Write ``genotype_qc.tsv`` and ``subjects.tsv`` (with sidecars) under ``group_dir``."""
    group_dir = Path(group_dir)
    qc = write_table(genotypes.snp_qc, group_dir / "genotype_qc.tsv", SNP_QC_COLUMNS,
                     {"Source": genotypes.source, "Thresholds": thresholds,
                      "GenotypeKind": genotypes.dosage_kind})
    subjects = write_table(genotypes.person_qc, group_dir / "subjects.tsv",
                           {k: v for k, v in PERSON_COLUMNS.items()
                            if k in genotypes.person_qc.columns},
                           {"Summary": genotypes.summary,
                            **({"Relatives": relatives} if relatives else {})})
    return qc, subjects
