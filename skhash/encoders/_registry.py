"""The one list of encoders: the CLI's ``--method``, the demo, ``skhash``'s lazy exports, the API docs and
(later) the comparison runner all read it.

Adding a method is its file plus one line here. Entries name the class and its module as strings, so
reading the registry imports no encoder (and no torch): :func:`get_encoder` imports one on demand.
"""

import importlib
from collections import namedtuple

from .._validation import InputError

EncoderSpec = namedtuple("EncoderSpec", "name class_name module family supervised summary")
EncoderSpec.__doc__ = """One registered encoder.

name : the short name used by the CLI and ``compare`` (``"orthohash"``).
class_name : the public class name, exported as ``skhash.<class_name>``.
module : the module that defines it (imported only when the class is asked for).
family : ``"shallow"``, ``"deep-pointwise"``, ``"deep-pairwise"`` or ``"unsupervised"``.
supervised : whether ``fit`` needs labels.
summary : one line for ``--help`` and the docs.
"""

ENCODERS = (
    EncoderSpec("orthohash", "OrthoHashEncoder", "skhash.encoders._orthohash", "deep-pointwise", True,
                "OrthoHash: one cosine-margin loss against fixed orthogonal targets (NeurIPS 2021)"),
    EncoderSpec("csq", "CSQEncoder", "skhash.encoders._csq", "deep-pointwise", True,
                "CSQ: pull tanh codes to hash centres (CVPR 2020)"),
    EncoderSpec("greedyhash", "GreedyHashEncoder", "skhash.encoders._greedyhash", "deep-pointwise", True,
                "GreedyHash: classify the signs, straight-through gradient (NeurIPS 2018)"),
    EncoderSpec("ce", "CEEncoder", "skhash.encoders.pointwise._ce", "deep-pointwise", True,
                "CE, CE+BN, CE+BiHalf: a classifier on the latent code (OrthoHash's baselines)"),
    EncoderSpec("jmlh", "JMLHEncoder", "skhash.encoders.pointwise._jmlh", "deep-pointwise", True,
                "JMLH: classify stochastic binary neurons, KL prior on the bits (ICCV-W 2019)"),
    EncoderSpec("dpn", "DPNEncoder", "skhash.encoders.pointwise._dpn", "deep-pointwise", True,
                "DPN: per-bit hinge past a margin of fixed class targets (IJCAI 2020)"),
    EncoderSpec("sdhc", "SDHCEncoder", "skhash.encoders.pointwise._sdhc", "deep-pointwise", True,
                "SDH-C: classifier on tanh codes with Deep Hashing's regularisers (CVPR 2015)"),
    EncoderSpec("dcwh", "DCWHEncoder", "skhash.encoders.pointwise._dcwh", "deep-pointwise", True,
                "DCWH: Gaussian class-wise cross-entropy to class-mean centres (TNNLS)"),
    EncoderSpec("idcwh", "IDCWHEncoder", "skhash.encoders.pointwise._idcwh", "deep-pointwise", True,
                "IDCWH: DCWH with learnable centres and centre-similarity learning (ICPR 2020)"),
    EncoderSpec("hashnet", "HashNetEncoder", "skhash.encoders.pairwise._hashnet", "deep-pairwise", True,
                "HashNet: weighted pairwise likelihood of tanh codes, with continuation (ICCV 2017)"),
    EncoderSpec("dpsh", "DPSHEncoder", "skhash.encoders.pairwise._dpsh", "deep-pairwise", True,
                "DPSH: pairwise likelihood of the batch against a memory of all training codes (IJCAI 2016)"),
    EncoderSpec("dsdh", "DSDHEncoder", "skhash.encoders.pairwise._dsdh", "deep-pairwise", True,
                "DSDH: DPSH's likelihood plus a classifier on discrete codes, alternating B-steps (NIPS 2017)"),
    EncoderSpec("dhn", "DHNEncoder", "skhash.encoders.pairwise._dhn", "deep-pairwise", True,
                "DHN: pairwise cross-entropy of the batch plus a log-cosh quantisation penalty (AAAI 2016)"),
    EncoderSpec("dtsh", "DTSHEncoder", "skhash.encoders.pairwise._dtsh", "deep-pairwise", True,
                "DTSH: likelihood of the batch's triplets (ACCV 2016)"),
    EncoderSpec("dnnh", "DNNHEncoder", "skhash.encoders.pairwise._dnnh", "deep-pairwise", True,
                "DNNH: divide-and-encode head, triplet ranking hinge on codes in [0, 1] (CVPR 2015)"),
    EncoderSpec("shbdnn", "SHBDNNEncoder", "skhash.encoders.pairwise._shbdnn", "deep-pairwise", True,
                "SH-BDNN: code inner products regressed onto +-1 similarities, B = sgn(H) steps (ECCV 2016)"),
    EncoderSpec("lsh", "LSHEncoder", "skhash.encoders.shallow._lsh", "shallow", False,
                "LSH: signs of random projections of the centred features (Charikar, STOC 2002)"),
    EncoderSpec("pcah", "PCAHashEncoder", "skhash.encoders.shallow._pcah", "shallow", False,
                "PCAH: signs of the top principal components"),
    EncoderSpec("itq", "ITQEncoder", "skhash.encoders.shallow._itq", "shallow", False,
                "ITQ: PCA, then the rotation of least quantisation error (CVPR 2011)"),
    EncoderSpec("sh", "SpectralHashEncoder", "skhash.encoders.shallow._spectral", "shallow", False,
                "Spectral hashing: Laplacian eigenfunctions of the principal box (NIPS 2008)"),
    EncoderSpec("sph", "SphericalHashEncoder", "skhash.encoders.shallow._spherical", "shallow", False,
                "Spherical hashing: balanced, pairwise independent hyperspheres (CVPR 2012)"),
    EncoderSpec("kmh", "KMeansHashEncoder", "skhash.encoders.shallow._kmeans", "shallow", False,
                "K-means hashing: product k-means with Hamming-affine centres (CVPR 2013)"),
    EncoderSpec("ba", "BinaryAutoencoderEncoder", "skhash.encoders.shallow._autoencoder", "shallow", False,
                "Binary autoencoder: linear-threshold encoder, linear decoder, trained by MAC (CVPR 2015)"),
    EncoderSpec("sign", "SignEncoder", "skhash.encoders.shallow._sign", "shallow", False,
                "Sign of the features, one bit each (OrthoHash's R50-DELG-H)"),
    EncoderSpec("itqcca", "ITQCCAEncoder", "skhash.encoders.shallow._itqcca", "shallow", True,
                "ITQ-CCA: regularised CCA against the labels, then ITQ's rotation (CVPR 2011)"),
    EncoderSpec("ksh", "KSHEncoder", "skhash.encoders.shallow._ksh", "shallow", True,
                "KSH: kernel hash functions fitted bit by bit to the label similarity (CVPR 2012)"),
    EncoderSpec("sdh", "SDHEncoder", "skhash.encoders.shallow._sdh", "shallow", True,
                "SDH: discrete codes that classify the labels, and a kernel hash fitted to them (CVPR 2015)"),
    EncoderSpec("fsdh", "FSDHEncoder", "skhash.encoders.shallow._fsdh", "shallow", True,
                "FSDH: SDH with labels regressed onto the codes, a closed-form discrete step (TPAMI 2018)"),
    EncoderSpec("bre", "BREEncoder", "skhash.encoders.shallow._bre", "shallow", False,
                "BRE: kernel hashes whose Hamming distances reconstruct distances, or labels (NIPS 2009)"),
    EncoderSpec("pseudolabel", "PseudoLabelEncoder", "skhash.encoders.unsupervised._pseudo", "unsupervised", False,
                "Pseudo-labels: k-means cluster ids as classes for a supervised encoder (OrthoHash by default)"),
    EncoderSpec("bihalf", "BiHalfEncoder", "skhash.encoders.unsupervised._bihalf", "unsupervised", False,
                "Bi-half: every bit split at the batch median, code cosines regressed on features' (AAAI 2021)"),
    EncoderSpec("ugreedyhash", "UnsupervisedGreedyHashEncoder", "skhash.encoders.unsupervised._greedyhash",
                "unsupervised", False,
                "GreedyHash without labels: straight-through signs, cosines regressed on features' (NeurIPS 2018)"),
    EncoderSpec("cibhash", "CIBHashEncoder", "skhash.encoders.unsupervised._cibhash", "unsupervised", False,
                "CIBHash: contrastive codes of two feature-space views, information bottleneck (IJCAI 2021)"),
    EncoderSpec("uhbdnn", "UHBDNNEncoder", "skhash.encoders.unsupervised._uhbdnn", "unsupervised", False,
                "UH-BDNN: features reconstructed from discrete codes, alternating DCC B-steps (ECCV 2016)"),
    EncoderSpec("tbh", "TBHEncoder", "skhash.encoders.unsupervised._tbh", "unsupervised", False,
                "TBH: twin binary/continuous bottlenecks joined by a code graph, adversarial priors (CVPR 2020)"),
)

FAMILIES = ("shallow", "deep-pointwise", "deep-pairwise", "unsupervised")



def encoder_names(*, family=None, supervised=None):
    """Short names of the registered encoders, in registry order, optionally filtered."""
    return [
        s.name
        for s in ENCODERS
        if (family is None or s.family == family) and (supervised is None or s.supervised == supervised)
    ]


def encoder_spec(name):
    """The :class:`EncoderSpec` of a short name (``"orthohash"``) or class name (``"OrthoHashEncoder"``)."""
    for spec in ENCODERS:
        if name in (spec.name, spec.class_name):
            return spec
    raise InputError(f"Unknown encoder {name!r}; choose one of: {', '.join(encoder_names())}.")


def get_encoder(name):
    """The encoder class registered under a short name or class name (imports its module)."""
    spec = encoder_spec(name)
    return getattr(importlib.import_module(spec.module), spec.class_name)
