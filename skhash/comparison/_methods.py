"""Which methods a comparison runs, under which names, and how each run's estimator is made.

A method is a registered encoder's short name (``"itq"``), a group (``"all"``, ``"supervised"``,
``"unsupervised"``), the float reference (``"float"``), or an estimator instance (an encoder or a
``Pipeline`` ending in one), cloned for every run so that no two runs share fitted state.
"""

from collections import namedtuple

from sklearn.base import clone

from .._validation import InputError
from ..encoders._registry import encoder_names, encoder_spec, get_encoder

FLOAT_REFERENCE = "float"
GROUPS = {
    "all": lambda: encoder_names(),
    "supervised": lambda: encoder_names(supervised=True),
    "unsupervised": lambda: encoder_names(supervised=False),
}

Method = namedtuple("Method", "name estimator supervised own_width")
Method.__doc__ = """One row group of the comparison.

name : str
    Its row label (a registered method's class name without "Encoder": ``"ITQ"``; ``"float"``).
estimator : estimator or None
    The unfitted estimator that is cloned for every run; None for the float reference.
supervised : bool
    Whether ``fit`` gets the labels (a user's estimator gets them unless its registry entry says not).
own_width : bool
    The method has one code length of its own (the float reference, ``SignEncoder``): one row per
    repeat, at that width, whatever ``n_bits`` asks for.
"""


def display_name(method):
    """The row label of a registered method: its class name without "Encoder" (``"OrthoHash"``)."""
    return encoder_spec(method).class_name.removesuffix("Encoder")


def final_step(estimator):
    """The estimator that makes the codes: the last step of a ``Pipeline``, else the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def resolve_methods(methods):
    """The :class:`Method` list that ``methods`` names, in order, each once.

    Parameters
    ----------
    methods : str, estimator, dict or sequence of them
        Names (registry names, groups, ``"float"``), estimators, or a dict ``{row label: estimator or
        name}``.
    """
    if isinstance(methods, dict):
        items = list(methods.items())
    else:
        if isinstance(methods, str) or hasattr(methods, "fit"):
            methods = [methods]
        try:
            items = [(None, m) for m in methods]
        except TypeError as exc:
            raise InputError(
                f"methods must be a name, an estimator, or a list or dict of them; got {type(methods).__name__}."
            ) from exc
    resolved = []
    for label, method in items:
        for m in _expand(method):
            resolved.append(m if label is None else m._replace(name=str(label)))
    if not resolved:
        raise InputError("methods is empty; name at least one method (or 'all').")
    names = [m.name for m in resolved]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(
            f"methods names {repeated} more than once; give each row a label of its own with a dict "
            "{label: estimator}."
        )
    return resolved


def _expand(method):
    if isinstance(method, str):
        if method in GROUPS:
            return [_registered(name) for name in GROUPS[method]()]
        if method == FLOAT_REFERENCE:
            return [Method(FLOAT_REFERENCE, None, False, True)]
        if method not in encoder_names() and not _is_class_name(method):
            raise InputError(
                f"Unknown method {method!r}; choose from: {', '.join(encoder_names())}, "
                f"{', '.join(GROUPS)}, or {FLOAT_REFERENCE!r} (exact cosine k-NN on the features)."
            )
        return [_registered(encoder_spec(method).name)]
    if not (hasattr(method, "fit") and hasattr(method, "transform") and hasattr(method, "get_params")):
        raise InputError(
            f"methods holds {method!r}, which is neither a method name nor an estimator with fit, "
            "transform and get_params."
        )
    final = final_step(method)
    name = type(final).__name__.removesuffix("Encoder")
    spec = _spec_of_class(type(final).__name__)
    supervised = True if spec is None else spec.supervised
    return [Method(name, method, supervised, _has_own_width(method))]


def _is_class_name(name):
    try:
        encoder_spec(name)
    except InputError:
        return False
    return True


def _spec_of_class(class_name):
    return encoder_spec(class_name) if _is_class_name(class_name) else None


def _registered(name):
    spec = encoder_spec(name)
    estimator = get_encoder(name)()
    if estimator.get_params().get("encoder", False) is None:
        # A meta-encoder (PseudoLabelEncoder) with its documented default inner encoder, OrthoHash, made
        # explicit so that the code length, device and epochs reach it (``encoder__n_bits``).
        estimator.set_params(encoder=get_encoder("orthohash")())
    return Method(display_name(name), estimator, spec.supervised, _has_own_width(estimator))


def _has_own_width(estimator):
    return _parameter(estimator, "n_bits") is None


def _parameter(estimator, param):
    """The parameter names that set ``param``: itself, or each Pipeline step's ``<step>__<param>``."""
    params = estimator.get_params(deep=True)
    if param in params:
        return [param]
    found = [p for p in params if p.count("__") == 1 and p.endswith(f"__{param}")]
    return found or None


def make_estimator(method, n_bits, seed, device, params):
    """A fresh clone of ``method.estimator`` set for one run.

    ``n_bits``, ``random_state`` and ``device`` are set where the estimator (or, for a Pipeline, its
    steps) has them; ``params`` (``{name: value}``, e.g. ``{"max_epochs": 5}``) likewise, each where it
    applies, so one setting can bound the epochs of every deep method.
    """
    estimator = clone(method.estimator)
    wanted = dict(params or {})
    wanted.update(random_state=seed, device=device)
    if not method.own_width:
        wanted["n_bits"] = n_bits
    settings = {}
    for param, value in wanted.items():
        if value is None and param == "device":
            continue
        for name in _parameter(estimator, param) or ():
            settings[name] = value
    return estimator.set_params(**settings)


def check_params(methods, params):
    """Raise if a parameter of ``params`` applies to none of the methods (a typo would be silent)."""
    for param in params or {}:
        if not any(m.estimator is not None and _parameter(m.estimator, param) for m in methods):
            raise InputError(f"{param} (in params) applies to none of the methods.")
