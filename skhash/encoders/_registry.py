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
