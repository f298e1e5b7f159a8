"""The function :func:`skhash.compare` (in a module not named ``compare``, which would shadow it)."""

import numbers
import re

import numpy as np

from .._validation import InputError, check_n_jobs, check_positive_int, validate_params
from ._methods import FLOAT_REFERENCE, check_params, final_step, make_estimator, resolve_methods
from ._protocols import check_protocol, metric_name
from ._result import ComparisonResult
from ._runs import RunData, execute
from ._store import RunStore


def compare(
    methods,
    n_bits,
    X_train,
    y_train=None,
    X_query=None,
    y_query=None,
    X_db=None,
    y_db=None,
    *,
    protocol="map",
    k=None,
    ground_truth=None,
    n_repeats=1,
    random_state=0,
    n_jobs=None,
    scheduler=None,
    device="auto",
    params=None,
    store=None,
    overwrite=False,
    progress=None,
):
    """Fit, encode, search and score several hashing methods at several code lengths: the field's table.

    Every run (a method at a code length and a seed) fits a fresh clone of the method on the training
    set, encodes the queries and the database, ranks the database for every query with
    :class:`skhash.HammingNeighbors` (ties by index: exact and the same on every run) and scores the
    ranking with :mod:`skhash.metrics` under ``protocol``. A run's quality columns are those of the
    method fitted on its own with the same parameters, scored by the protocol's metric.

    Parameters
    ----------
    methods : str, estimator, dict or sequence of them
        Registered names (``"itq"``, ``"orthohash"``; see :func:`skhash.encoders.encoder_names`),
        ``"all"``, ``"supervised"``, ``"unsupervised"``, ``"float"`` (exact cosine k-NN on the raw
        features: the reference row), or estimators with ``fit``/``transform`` (an encoder or a
        ``Pipeline`` ending in one; cloned for every run). A dict ``{row label: method}`` names the rows.
    n_bits : int or sequence of int
        Code lengths. Methods with one width of their own (``"float"``, ``SignEncoder``: one bit per
        feature) get one row at that width.
    X_train : array-like of shape (n_train, n_features)
        Training features (an HDF5 data set or a Dask array streams, as in ``fit``).
    y_train : array-like of shape (n_train,) or (n_train, n_classes), default=None
        Training labels, for the supervised methods (unsupervised ones get ``fit(X_train)`` only).
    X_query, y_query : array-like, default=None
        Queries and their labels (``protocol="map"``; revisitop and GLDv2 need no labels).
    X_db, y_db : array-like, default=None
        Database and its labels; for ``protocol="leave-one-out"`` the one set searched against itself.
    protocol : {"map", "leave-one-out", "revisitop", "gldv2"}, default="map"
        Category-level mAP@k (single- or multi-label), leave-one-out mAP@k on ``X_db``, the revisitop
        protocol (``map`` is Medium; Easy and Hard are columns too) or GLDv2 retrieval mAP@k.
    k : int, default=None
        Cut-off of the mAP: all of the database when None (100 for GLDv2); revisitop ranks all.
    ground_truth : list of dict, or dict, default=None
        Relevance of revisitop (``gnd``, or :func:`skhash.load_revisitop`'s result) and GLDv2 (the
        solution ``{query row: relevant database rows}``).
    n_repeats : int, default=1
        Runs of each method and code length; repeat ``r`` uses ``random_state + r``.
    random_state : int or None, default=0
        Seed of repeat 0 (``None``: drawn at random, so nothing is reproducible or resumable).
    n_jobs : int, default=None
        joblib processes running runs at once (``None``: one run at a time, here). Results equal the
        serial ones.
    scheduler : str or distributed.Client, default=None
        Run on Dask instead: a scheduler's address, or a client.
    device : str, default="auto"
        Where the deep methods train (``"cpu"``, ``"cuda"``, ``"auto"``).
    params : dict, default=None
        Parameters set on every method that has them, e.g. ``{"max_epochs": 5}``.
    store : str or path-like, default=None
        A folder that records every finished run (JSON); a compare that stopped resumes there,
        skipping the runs recorded. It must hold runs of this same comparison, unless ``overwrite``.
    overwrite : bool, default=False
        Forget the runs recorded in ``store``.
    progress : callable, default=None
        ``progress(n_done, n_runs, row)`` after every run (and once for those found in ``store``,
        with ``row=None``).

    Returns
    -------
    result : ComparisonResult
        ``.table`` (one dict per run), ``to_markdown()``, ``to_latex()``, ``to_frame()``, ``plot()``.
        Timings are wall-clock seconds of ``fit`` and of encoding queries and database; peak memory
        is the growth of the process's resident memory during them (Linux's ``VmHWM``, reset before
        each run), and of torch's CUDA allocator on a GPU.

    Notes
    -----
    The first run of a deep method in a process also pays torch's one-time imports (seconds), in its
    ``fit_s``. With ``n_jobs`` or ``scheduler`` the data travel to the workers: give in-memory arrays.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> import skhash
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    >>> result = skhash.compare(["lsh", "itq", "float"], [16, 32], X_train, y_train,
    ...                         X_db=X_test, y_db=y_test, protocol="leave-one-out")
    >>> [(row["method"], row["n_bits"]) for row in result.table]
    [('LSH', 16), ('LSH', 32), ('ITQ', 16), ('ITQ', 32), ('float', 2048)]
    >>> print(result.to_markdown(digits=2))  # doctest: +SKIP
    """
    resolved = resolve_methods(methods)
    bits = _check_bits(n_bits, resolved)
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    if n_jobs is not None:
        check_n_jobs(n_jobs)
    if n_jobs not in (None, 1) and scheduler is not None:
        raise InputError("Pass n_jobs (joblib processes) or scheduler (Dask), not both.")
    check_params(resolved, params)
    data = _check_data(X_train, y_train, X_query, y_query, X_db, y_db)
    spec = check_protocol(protocol, k, ground_truth, data)
    if any(m.supervised for m in resolved) and data.y_train is None:
        names = [m.name for m in resolved if m.supervised]
        raise InputError(f"{', '.join(names)} learn from labels: give y_train.")
    seeds = _seeds(random_state, n_repeats)
    runs = _runs(resolved, bits, seeds)
    _check_parameters(runs, device, params)
    keys = [_key(i, method, n, r) for i, (method, n, _, r) in zip(_method_index(runs, resolved), runs)]
    records = {}
    if store is not None:
        manifest = _manifest(resolved, bits, seeds, spec, device, params, data)
        store = RunStore(store, manifest, overwrite=overwrite)
        records = {k: v for k, v in store.load().items() if k in keys}
    if progress is not None and records:
        progress(len(records), len(runs), None)
    tasks = [
        (key, (method, n, seed, r, device, params, spec))
        for key, (method, n, seed, r) in zip(keys, runs)
        if key not in records
    ]
    for key, record in execute(tasks, data, n_jobs=n_jobs, scheduler=scheduler):
        if store is not None:
            store.save(key, record)
        records[key] = record
        if progress is not None:
            progress(len(records), len(runs), record["row"])
    return ComparisonResult(
        [records[key] for key in keys], metric_name=metric_name(spec, data.X_db.shape[0]), protocol=protocol,
        n_bits=bits,
    )


def _check_parameters(runs, device, params):
    """Each run's parameters through its encoder's own checks: a bad one fails now, not after hours."""
    for method, n, seed, _ in runs:
        if method.estimator is None:
            continue
        encoder = final_step(make_estimator(method, n, seed, device, params))
        if hasattr(encoder, "_validate_params"):
            try:
                validate_params(encoder)
            except InputError as exc:
                at = "" if n is None else f" at {n} bits"
                raise type(exc)(f"{method.name}{at}: {exc}") from exc


def _check_bits(n_bits, methods):
    values = [n_bits] if isinstance(n_bits, numbers.Integral) else n_bits
    try:
        values = [check_positive_int(b, "n_bits") for b in values]
    except TypeError as exc:
        raise InputError(f"n_bits must be an int or a sequence of ints, got {n_bits!r}.") from exc
    if not values and not all(m.own_width for m in methods):
        raise InputError("n_bits is empty; give at least one code length.")
    return sorted(set(values))


def _rows(X, name):
    if X is None:
        return None
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if len(X.shape) != 2:
        raise InputError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}.")
    return X


def _check_data(X_train, y_train, X_query, y_query, X_db, y_db):
    data = RunData(
        _rows(X_train, "X_train"), y_train, _rows(X_query, "X_query"), y_query, _rows(X_db, "X_db"), y_db
    )
    if data.X_train is None:
        raise InputError("X_train is needed: the features the methods are fitted on.")
    widths = {name: X.shape[1] for name, X in zip(("X_train", "X_query", "X_db"), data[::2]) if X is not None}
    if len(set(widths.values())) > 1:
        raise InputError(f"The feature sets differ in width: {widths}; they must be descriptors of one kind.")
    if y_train is not None and len(y_train) != data.X_train.shape[0]:
        raise InputError(f"y_train has {len(y_train)} labels for {data.X_train.shape[0]} rows of X_train.")
    return data


def _seeds(random_state, n_repeats):
    if random_state is None:
        base = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    elif isinstance(random_state, numbers.Integral):
        base = int(random_state)
    else:
        raise InputError(f"random_state must be an int or None, got {random_state!r}.")
    return [base + r for r in range(n_repeats)]


def _runs(methods, bits, seeds):
    """``(method, n_bits, seed, repeat)`` of every run, in table order."""
    runs = []
    for method in methods:
        if method.estimator is None:  # the float reference: deterministic, one run
            runs.append((method, None, None, 0))
            continue
        for n in [None] if method.own_width else bits:
            runs += [(method, n, seed, r) for r, seed in enumerate(seeds)]
    return runs


def _method_index(runs, methods):
    return [next(i for i, m in enumerate(methods) if m is run[0]) for run in runs]


def _key(index, method, n_bits, repeat):
    slug = re.sub(r"[^A-Za-z0-9]+", "-", method.name).strip("-") or "method"
    return f"{index:03d}-{slug}-{'own' if n_bits is None else n_bits}-r{repeat}"


def _manifest(methods, bits, seeds, spec, device, params, data):
    """What the runs depend on, in JSON: a store holding runs of anything else is refused."""
    import joblib

    return {
        "methods": [[m.name, FLOAT_REFERENCE if m.estimator is None else joblib.hash(m.estimator)] for m in methods],
        "n_bits": bits,
        "seeds": seeds,
        "protocol": spec.name,
        "k": spec.k,
        "ground_truth": None if spec.ground_truth is None else joblib.hash(spec.ground_truth),
        "device": str(device),
        "params": {k: repr(v) for k, v in sorted((params or {}).items())},
        "data": [_fingerprint(a) for a in data],
    }


def _fingerprint(a):
    """A hash of an in-memory array's contents; the file, shape and dtype of a streamed one."""
    import joblib

    if a is None:
        return None
    if isinstance(a, (np.ndarray, list, tuple)):
        return joblib.hash(np.asarray(a))
    where = getattr(getattr(a, "file", None), "filename", "") + ":" + str(getattr(a, "name", ""))
    return f"{type(a).__name__} {where} {tuple(a.shape)} {a.dtype}"
