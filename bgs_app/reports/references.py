"""The works the methods boilerplate cites: one record each, written as the Markdown
reference list of ``CITATION.md`` and as BibTeX (``CITATION.bib``), like fMRIPrep's.

A boilerplate cites a work as ``[@key]``; :func:`cited` finds the keys in a text.
"""

from __future__ import annotations

import re

#: key -> BibTeX type and fields (``short`` is the Markdown line's text).
WORKS: dict[str, dict[str, str]] = {
    "nipype": {"type": "article", "author": "Gorgolewski, Krzysztof and others",
               "title": "Nipype: a flexible, lightweight and extensible neuroimaging data "
                        "processing framework in Python",
               "journal": "Frontiers in Neuroinformatics", "volume": "5", "pages": "13",
               "year": "2011", "doi": "10.3389/fninf.2011.00013",
               "short": "Gorgolewski et al. (2011) Front Neuroinform 5:13."},
    "ants": {"type": "article", "author": "Avants, Brian B. and Epstein, Charles L. and "
                                         "Grossman, Murray and Gee, James C.",
             "title": "Symmetric diffeomorphic image registration with cross-correlation: "
                      "evaluating automated labeling of elderly and neurodegenerative brain",
             "journal": "Medical Image Analysis", "volume": "12", "number": "1",
             "pages": "26--41", "year": "2008", "doi": "10.1016/j.media.2007.06.004",
             "short": "Avants et al. (2008) Med Image Anal 12:26-41."},
    "n4": {"type": "article", "author": "Tustison, Nicholas J. and others",
           "title": "N4ITK: improved N3 bias correction",
           "journal": "IEEE Transactions on Medical Imaging", "volume": "29", "number": "6",
           "pages": "1310--1320", "year": "2010", "doi": "10.1109/TMI.2010.2046908",
           "short": "Tustison et al. (2010) IEEE Trans Med Imaging 29:1310-1320."},
    "atropos": {"type": "article", "author": "Avants, Brian B. and Tustison, Nicholas J. and "
                                            "Wu, Jue and Cook, Philip A. and Gee, James C.",
                "title": "An open source multivariate framework for n-tissue segmentation "
                         "with evaluation on public data",
                "journal": "Neuroinformatics", "volume": "9", "number": "4",
                "pages": "381--400", "year": "2011", "doi": "10.1007/s12021-011-9109-y",
                "short": "Avants et al. (2011) Neuroinformatics 9:381-400."},
    "deepbet": {"type": "article",
                "author": "Fisch, Lukas and Zumdick, Stefan and Barkhau, Carlotta and Emden, "
                          "Daniel and Ernsting, Jan and Leenings, Ramona and Sarink, Kelvin "
                          "and Winter, Nils R. and Risse, Benjamin and Dannlowski, Udo and "
                          "Hahn, Tim",
                "title": "deepbet: fast brain extraction of T1-weighted MRI using "
                         "convolutional neural networks",
                "journal": "Computers in Biology and Medicine", "volume": "179",
                "pages": "108845", "year": "2024",
                "doi": "10.1016/j.compbiomed.2024.108845",
                "short": "Fisch et al. (2024) Comput Biol Med 179:108845."},
    "sfcn": {"type": "article", "author": "Peng, Han and Gong, Weikang and Beckmann, "
                                         "Christian F. and Vedaldi, Andrea and Smith, Stephen M.",
             "title": "Accurate brain age prediction with lightweight deep neural networks",
             "journal": "Medical Image Analysis", "volume": "68", "pages": "101871",
             "year": "2021", "doi": "10.1016/j.media.2020.101871",
             "short": "Peng H, Gong W, Beckmann CF, Vedaldi A, Smith SM (2021). Accurate "
                      "brain age prediction with lightweight deep neural networks. Med Image "
                      "Anal 68:101871."},
    "ig": {"type": "inproceedings", "author": "Sundararajan, Mukund and Taly, Ankur and "
                                             "Yan, Qiqi",
           "title": "Axiomatic attribution for deep networks",
           "booktitle": "Proceedings of the 34th International Conference on Machine "
                        "Learning", "year": "2017",
           "short": "Sundararajan M, Taly A, Yan Q (2017). Axiomatic attribution for deep "
                    "networks. ICML."},
    "smoothgrad": {"type": "misc", "author": "Smilkov, Daniel and others",
                   "title": "SmoothGrad: removing noise by adding noise", "year": "2017",
                   "eprint": "1706.03825", "archiveprefix": "arXiv",
                   "short": "Smilkov D et al. (2017). SmoothGrad: removing noise by adding "
                            "noise. arXiv:1706.03825."},
    "captum": {"type": "misc", "author": "Kokhlikyan, Narine and others",
               "title": "Captum: a unified and generic model interpretability library for "
                        "PyTorch", "year": "2020", "eprint": "2009.07896",
               "archiveprefix": "arXiv",
               "short": "Kokhlikyan N et al. (2020). Captum: a unified and generic model "
                        "interpretability library for PyTorch. arXiv:2009.07896."},
    "plink": {"type": "article", "author": "Chang, Christopher C. and others",
              "title": "Second-generation PLINK: rising to the challenge of larger and "
                       "richer datasets", "journal": "GigaScience", "volume": "4",
              "pages": "7", "year": "2015", "doi": "10.1186/s13742-015-0047-8",
              "short": "Chang CC et al. (2015). Second-generation PLINK. GigaScience 4:7."},
    "hwe": {"type": "article", "author": "Wigginton, Janis E. and Cutler, David J. and "
                                        "Abecasis, Goncalo R.",
            "title": "A note on exact tests of Hardy-Weinberg equilibrium",
            "journal": "American Journal of Human Genetics", "volume": "76", "number": "5",
            "pages": "887--893", "year": "2005", "doi": "10.1086/429864",
            "short": "Wigginton JE, Cutler DJ, Abecasis GR (2005). A note on exact tests of "
                     "Hardy-Weinberg equilibrium. Am J Hum Genet 76:887-893."},
    "bh": {"type": "article", "author": "Benjamini, Yoav and Hochberg, Yosef",
           "title": "Controlling the false discovery rate: a practical and powerful approach "
                    "to multiple testing",
           "journal": "Journal of the Royal Statistical Society: Series B", "volume": "57",
           "number": "1", "pages": "289--300", "year": "1995",
           "short": "Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate. "
                    "J R Stat Soc B 57:289-300."},
    "by": {"type": "article", "author": "Benjamini, Yoav and Yekutieli, Daniel",
           "title": "The control of the false discovery rate in multiple testing under "
                    "dependency", "journal": "The Annals of Statistics", "volume": "29",
           "number": "4", "pages": "1165--1188", "year": "2001",
           "short": "Benjamini Y, Yekutieli D (2001). The control of the false discovery "
                    "rate in multiple testing under dependency. Ann Stat 29:1165-1188."},
    "acat": {"type": "article", "author": "Liu, Yaowu and Xie, Jun",
             "title": "Cauchy combination test: a powerful test with analytic p-value "
                      "calculation under arbitrary dependency structures",
             "journal": "Journal of the American Statistical Association", "volume": "115",
             "number": "529", "pages": "393--402", "year": "2020",
             "short": "Liu Y, Xie J (2020). Cauchy combination test: a powerful test with "
                      "analytic p-value calculation under arbitrary dependency structures. "
                      "J Am Stat Assoc 115:393-402."},
    "ar": {"type": "article", "author": "Anderson, T. W. and Rubin, Herman",
           "title": "Estimation of the parameters of a single equation in a complete system "
                    "of stochastic equations",
           "journal": "The Annals of Mathematical Statistics", "volume": "20", "number": "1",
           "pages": "46--63", "year": "1949",
           "short": "Anderson TW, Rubin H (1949). Estimation of the parameters of a single "
                    "equation in a complete system of stochastic equations. Ann Math Stat "
                    "20:46-63."},
    "staiger": {"type": "article", "author": "Staiger, Douglas and Stock, James H.",
                "title": "Instrumental variables regression with weak instruments",
                "journal": "Econometrica", "volume": "65", "number": "3",
                "pages": "557--586", "year": "1997",
                "short": "Staiger D, Stock JH (1997). Instrumental variables regression with "
                         "weak instruments. Econometrica 65:557-586."},
    "linearmodels": {"type": "misc", "author": "Sheppard, Kevin and others",
                     "title": "linearmodels: instrumental variable and linear panel models "
                              "for Python", "howpublished": "https://github.com/bashtage/"
                                                            "linearmodels",
                     "short": "Sheppard K et al. linearmodels: instrumental variable and "
                              "linear panel models for Python."},
    "statsmodels": {"type": "inproceedings", "author": "Seabold, Skipper and Perktold, Josef",
                    "title": "statsmodels: econometric and statistical modeling with Python",
                    "booktitle": "Proceedings of the 9th Python in Science Conference",
                    "pages": "92--96", "year": "2010",
                    "short": "Seabold S, Perktold J (2010). statsmodels. Proc 9th Python in "
                             "Science Conf."},
    "sklearn": {"type": "article", "author": "Pedregosa, Fabian and others",
                "title": "Scikit-learn: machine learning in Python",
                "journal": "Journal of Machine Learning Research", "volume": "12",
                "pages": "2825--2830", "year": "2011",
                "short": "Pedregosa F et al. (2011). Scikit-learn. JMLR 12:2825-2830."},
    "nilearn": {"type": "article", "author": "Abraham, Alexandre and others",
                "title": "Machine learning for neuroimaging with scikit-learn",
                "journal": "Frontiers in Neuroinformatics", "volume": "8", "pages": "14",
                "year": "2014", "doi": "10.3389/fninf.2014.00014",
                "short": "Abraham A et al. (2014). Machine learning for neuroimaging with "
                         "scikit-learn. Front Neuroinform 8:14."},
    "ho": {"type": "article", "author": "Desikan, Rahul S. and others",
           "title": "An automated labeling system for subdividing the human cerebral cortex "
                    "on MRI scans into gyral based regions of interest",
           "journal": "NeuroImage", "volume": "31", "number": "3", "pages": "968--980",
           "year": "2006", "doi": "10.1016/j.neuroimage.2006.01.021",
           "short": "Desikan RS et al. (2006). An automated labeling system for subdividing "
                    "the human cerebral cortex. NeuroImage 31:968-980 (Harvard-Oxford "
                    "atlas)."},
    "pytorch": {"type": "inproceedings", "author": "Paszke, Adam and others",
                "title": "PyTorch: an imperative style, high-performance deep learning "
                         "library",
                "booktitle": "Advances in Neural Information Processing Systems 32",
                "year": "2019", "short": "Paszke A et al. (2019). PyTorch. NeurIPS."},
}


def cited(text: str) -> list[str]:
    """The keys ``text`` cites (``[@key]``), in order of first citation."""
    return list(dict.fromkeys(k for k in re.findall(r"\[@([A-Za-z0-9_-]+)\]", text)
                              if k in WORKS))


def reference_list(keys: list[str]) -> str:
    """The Markdown ``## References`` section of ``keys``."""
    lines = ["## References", ""]
    lines += [f"- [@{key}] {WORKS[key]['short']}" for key in keys]
    return "\n".join(lines) + "\n"


def bibtex(keys: list[str]) -> str:
    """BibTeX entries of ``keys`` (cite them as ``\\cite{key}``)."""
    entries = []
    for key in keys:
        work = WORKS[key]
        fields = [f"  {name} = {{{value}}}" for name, value in work.items()
                  if name not in ("type", "short")]
        entries.append(f"@{work['type']}{{{key},\n" + ",\n".join(fields) + "\n}\n")
    return "\n".join(entries)
