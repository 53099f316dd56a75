"""Benchmark genotype reading: 20 SNPs of 10,000 people out of a 100,000-person .bed.

Usage: python benchmarks/genotype_read.py [--people 100000] [--snps 2000] [--repeats 5]
Writes a simulated PLINK fileset once (bed-reader), then times
``bgs_app.genetics.load_genotypes`` (read, match, QC) and, in separate runs, the peak
memory it allocates (tracemalloc, numpy included), as JSON. Most of that memory is the
.fam table of every person in the file; the genotypes read are the small part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--snps", type=int, default=2000)
    parser.add_argument("--read-people", type=int, default=10_000)
    parser.add_argument("--read-snps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from bed_reader import to_bed

    from bgs_app.genetics import load_genotypes

    folder = Path(tempfile.mkdtemp(prefix="bgs-geno-bench-"))
    prefix = folder / "big"
    rng = np.random.default_rng(0)
    iids = [f"P{i:06d}" for i in range(args.people)]
    values = rng.binomial(2, 0.3, (args.people, args.snps)).astype(np.int8)
    to_bed(prefix.with_suffix(".bed"), values, properties={
        "fid": iids, "iid": iids, "sid": [f"rs{i}" for i in range(args.snps)],
        "chromosome": ["1"] * args.snps, "bp_position": list(range(args.snps)),
        "allele_1": ["A"] * args.snps, "allele_2": ["G"] * args.snps})
    del values
    snps = [f"rs{i}" for i in rng.choice(args.snps, args.read_snps, replace=False)]
    people = [iids[i] for i in np.sort(rng.choice(args.people, args.read_people,
                                                  replace=False))]
    times, peaks = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        g = load_genotypes(prefix, snps=snps, participants=people)
        times.append(time.perf_counter() - start)
    for _ in range(2):  # memory separately: tracemalloc slows Python code down
        tracemalloc.start()
        load_genotypes(prefix, snps=snps, participants=people)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert g.dosages.shape == (args.read_people, args.read_snps)
    read_bytes = args.read_people * args.read_snps * 4
    print(json.dumps({
        "benchmark": "genotype reading (load_genotypes: read + match + QC)",
        "machine": machine(),
        "bed_people": args.people, "bed_snps": args.snps,
        "bed_mb": round(prefix.with_suffix(".bed").stat().st_size / 1e6, 1),
        "read_people": args.read_people, "read_snps": args.read_snps,
        "seconds_median": round(statistics.median(times), 3),
        "seconds_runs": [round(t, 3) for t in times],
        "peak_traced_mb_median": round(statistics.median(peaks) / 1e6, 1),
        "dosage_matrix_mb": round(read_bytes / 1e6, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
