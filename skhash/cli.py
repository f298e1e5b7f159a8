"""The ``skhash`` command: fit an encoder, encode descriptors, search codes, evaluate rankings.

Every subcommand reads features, labels and codes from ``file.h5:key`` (an HDF5 data set; the key may be
left out when the file holds one) or from a ``.npy`` file, and streams large inputs in chunks::

    skhash fit --features train.h5:feats --labels train.h5:labels --bits 128 --out model.joblib
    skhash encode --model model.joblib --features db.h5:feats --out db_codes.h5 --recalibrate
    skhash encode --model model.joblib --features q.h5:feats --out q_codes.h5 --recalibrate db.h5:feats
    skhash search --db db_codes.h5 --queries q_codes.h5 -k 100 --out ranks.h5
    skhash evaluate --ranks ranks.h5 --revisitop gnd_roxford5k.pkl

The command only parses arguments, reads inputs, calls the library and writes outputs: the files go
through :mod:`skhash.io`, the methods come from the encoder registry, and the library checks its
inputs. A mistake in the inputs (a missing file or key, a shape that does not fit) reaches the command
as the library's :class:`~skhash._validation.InputError` and ends it with a one-line message on stderr
and exit status 1; any other exception is a bug and shows its traceback. Model files are joblib
pickles, and loading a pickle can run code: load only models you made or trust, as with scikit-learn.
"""

import argparse
import csv
import inspect
import json
import os
import re
import signal
import sys
import threading
import time

from ._validation import InputError, TrainingDivergedError, check_positive_int
from .encoders._registry import encoder_names, encoder_spec, get_encoder

EXIT_INPUT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by SIGINT
SPEC_HELP = "FILE.h5[:KEY] or FILE.npy"


# --------------------------------------------------------------------------------------------------
# reading inputs
# --------------------------------------------------------------------------------------------------


def _load_model(path):
    import joblib

    if not os.path.isfile(path):
        raise InputError(f"model file not found: {path!r}; make one with 'skhash fit ... --out {path}'.")
    try:
        model = joblib.load(path)
    except Exception as exc:  # a foreign or truncated file fails in many ways (KeyError 72 for an HDF5 file)
        reason = f"{type(exc).__name__}: {exc}"
        raise InputError(f"{path}: not a model saved by 'skhash fit' or joblib.dump ({reason}).") from exc
    encoder = final_encoder(model)
    if not (hasattr(model, "transform") and hasattr(encoder, "recalibrate") and hasattr(encoder, "coef_")):
        raise InputError(
            f"{path}: holds a {type(model).__name__}, not a fitted skhash encoder or a Pipeline ending in "
            "one; make one with 'skhash fit'."
        )
    return model


def final_encoder(model):
    """The encoder of a model: the model itself, or the last step of a ``Pipeline``."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


class _TransformedRows:
    """Rows of ``X`` passed through ``transformer.transform`` as they are read (a Pipeline's first steps).

    Wrapped in :class:`~skhash._streaming.StreamedRows`, a file larger than memory stays streamed.
    """

    def __init__(self, X, transformer):
        import numpy as np

        self.X, self.transformer = X, transformer
        first = transformer.transform(np.asarray(X[:1]))  # the width and dtype the steps give
        self.shape, self.dtype = (X.shape[0], first.shape[1]), first.dtype
        self.chunks = getattr(X, "chunks", None)

    def __getitem__(self, key):
        import numpy as np

        return self.transformer.transform(np.asarray(self.X[key]))


def _recalibrate(model, rows):
    """``model.recalibrate(rows)``, for a Pipeline on its encoder with the rows through the steps before."""
    from ._streaming import StreamedRows

    if final_encoder(model) is model:
        return model.recalibrate(rows)
    return model[-1].recalibrate(StreamedRows(_TransformedRows(rows, model[:-1])))


# --------------------------------------------------------------------------------------------------
# writing outputs: checked before the work, never over an input, never over anything unasked
# --------------------------------------------------------------------------------------------------


def check_output(args, flag, path, *, inputs=(), key=None):
    """Raise before any work unless ``path`` can be written, is no input, and replaces nothing unasked.

    Parameters
    ----------
    args : argparse.Namespace
        The command's arguments: ``inputs`` name its flags, ``args.overwrite`` says whether to replace.
    flag : str
        The output's flag, for the message.
    path : str
        The output file.
    inputs : tuple of str
        Flags of the command whose files the output must not be (``"--features"``).
    key : str, default=None
        The output is data set ``key`` of an HDF5 file that may hold others: the file may exist, the
        data set only with ``--overwrite``.
    """
    from .io import check_output_folder, split_spec

    check_output_folder(path, name=flag)
    for name in inputs:
        spec = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if isinstance(spec, str) and _same_file(path, split_spec(spec)[0]):
            raise InputError(
                f"{flag} {path} is also the {name} file; skhash never writes into an input. Choose another "
                "file."
            )
    if os.path.isdir(path):
        raise InputError(f"{flag} {path!r} is a folder; name a file.")
    _check_folder_writable(flag, path)
    if os.path.exists(path) and not args.overwrite and (key is None or _hdf5_holds(flag, path, key)):
        raise InputError(f"{flag} {path if key is None else f'{path}:{key}'} exists; pass --overwrite to replace it.")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _check_folder_writable(flag, path):
    """Make and remove a file beside ``path``: the one test of writing that also holds for root."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".skhash-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{flag}: cannot write in {folder!r}: {exc.strerror or exc}.") from exc


def _hdf5_holds(flag, path, key):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return key in f
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot add {key!r} to it, it does not open as HDF5 ({exc}).") from exc


def _write_atomically(path, write):
    """``write(tmp)`` to a new file beside ``path``, then rename it to ``path``: all of it, or nothing.

    The temporary name keeps ``path``'s extension (joblib reads it). An interrupt before the rename, even
    one that a library swallowed, leaves ``path`` as it was.
    """
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.skhash-{os.getpid()}.{base.rsplit('.', 1)[-1]}")
    try:
        check_not_interrupted()
        write(tmp)
        check_not_interrupted()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# Ctrl-C: a KeyboardInterrupt can be swallowed where Python cannot raise it (a weakref callback of h5py:
# "Exception ignored in WeakValueDictionary.remove"), so the command also remembers it and checks before
# every write and at the end.
_interrupted = False


def _on_sigint(signum, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def check_not_interrupted():
    """Raise KeyboardInterrupt if Ctrl-C was pressed, even if the interrupt was swallowed on its way."""
    if _interrupted:
        raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------------
# errors in the command's words
# --------------------------------------------------------------------------------------------------

_SKLEARN_PARAM = re.compile(r"The '(\w+)' parameter of \w+ must be")
_CALL_ASSIGNMENT = re.compile(r"\b\w+\((\w+)=('?)([^',;)\s]*)\2\)")
_ASSIGNMENT = re.compile(r"\b(\w+)=('?)([^',;)\s]*)\2")


def in_cli_words(message, flags):
    """``message`` with the library's parameter words in the command's flags.

    ``device='cpu'`` becomes ``--device cpu``, ``kneighbors(n_neighbors=5)`` becomes ``--n-neighbors 5``
    and scikit-learn's "The 'n_bits' parameter of OrthoHashEncoder must be" becomes "--bits must be", for
    the parameters in ``flags`` (``{parameter: flag}``); other words are left as they are.
    """

    def flag_and_value(match):
        name, value = match[1], match[3]
        return f"{flags[name]} {value}" if name in flags else match[0]

    message = _SKLEARN_PARAM.sub(lambda m: f"{flags[m[1]]} must be" if m[1] in flags else m[0], message)
    message = _CALL_ASSIGNMENT.sub(flag_and_value, message)
    message = _ASSIGNMENT.sub(flag_and_value, message)
    message = re.sub(r"\boverwrite=True\b", "--overwrite", message)
    # Bare parameter names with an underscore ("Lower learning_rate") are never ordinary words.
    message = re.sub(r"\b\w+_\w+\b", lambda m: flags.get(m[0], m[0]), message)
    return message


def _flags_of(parser):
    """``{dest: flag}`` of a parser's options, the long spelling where there is one."""
    return {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# skhash fit
# --------------------------------------------------------------------------------------------------


# The encoder flags of ``fit`` are generated from the registered classes: every parameter of every method
# is a flag (``--margin-type`` for ``margin_type``), typed by the class's ``_parameter_constraints``. A few
# keep the shorter names the command always had.
FLAG_OF_PARAM = {"n_bits": "--bits", "max_epochs": "--epochs"}
# Set by the command, not by the user: verbose follows --quiet.
COMMAND_PARAMS = {"verbose"}
# The API trains on "cuda" by default (the specification's choice, and a warning where there is none); the
# command defaults to "auto", which picks CUDA when there is one, silently, as a user of a shell expects.
DEFAULT_DEVICE = "auto"


def param_flag(param):
    """The ``fit`` flag of an encoder parameter: ``margin_type`` -> ``--margin-type``."""
    return FLAG_OF_PARAM.get(param, "--" + param.replace("_", "-"))


def encoder_parameters():
    """``{param: [(method, default, constraints), ...]}`` over the registry, in registry order."""
    params = {}
    for name in encoder_names():
        cls = get_encoder(name)
        constraints = getattr(cls, "_parameter_constraints", {})
        for p in inspect.signature(cls).parameters.values():
            if p.name in COMMAND_PARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params.setdefault(p.name, []).append((name, p.default, constraints.get(p.name, [])))
    return params


_NO_MATCH = object()


def _parse_as(text, constraint):
    """``text`` read as ``constraint`` (one entry of ``_parameter_constraints``) allows, or _NO_MATCH.

    Only the type is read here; ranges are the library's to check, so its message reaches the user.
    """
    import numbers

    from sklearn.utils._param_validation import Interval, StrOptions

    lowered = text.strip().lower()
    try:
        if constraint is None:
            return None if lowered == "none" else _NO_MATCH
        if isinstance(constraint, StrOptions):
            return text if text in constraint.options else _NO_MATCH
        if isinstance(constraint, Interval):
            return int(text) if issubclass(constraint.type, numbers.Integral) else float(text)
        if constraint == "boolean" or constraint is bool:
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[lowered]
        if constraint in ("random_state", "verbose") or constraint is int:
            return int(text)
        if constraint is float:
            return float(text)
        if constraint is str:
            return text
        if constraint == "array-like":  # e.g. targets: an array in a file
            from .io import open_features

            return open_features(text, name="the array")[...]
    except (ValueError, KeyError, TypeError, OSError):
        return _NO_MATCH
    return _NO_MATCH


def _describe(constraints):
    """The constraints in words, as scikit-learn says them, with string options sorted (a set's order
    changes from run to run, and the help and the reference page must not)."""
    from sklearn.utils._param_validation import StrOptions, make_constraint

    def words_of(c):
        if c is None:
            return "None"
        if isinstance(c, StrOptions):
            return "a str among {" + ", ".join(repr(o) for o in sorted(c.options)) + "}"
        return str(make_constraint(c))

    words = [words_of(c) for c in constraints]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _param_type(constraints):
    """argparse's ``type`` for a parameter with these constraints (anything, when there are none)."""

    def parse(text):
        for constraint in constraints or [str]:
            value = _parse_as(text, constraint)
            if value is not _NO_MATCH:
                return value
        raise argparse.ArgumentTypeError(f"must be {_describe(constraints)}, got {text!r}")

    return parse


def _default_words(takers):
    defaults = {repr(default) for _, default, _ in takers}
    if len(defaults) == 1:
        return defaults.pop()
    return ", ".join(f"{method} {default!r}" for method, default, _ in takers)


def _add_encoder_flags(p):
    group = p.add_argument_group(
        "method parameters",
        "Each sets the parameter of the same name of the chosen --method (see the API reference); left "
        "out, the method's default applies, except --device (default: auto).",
    )
    for param, takers in encoder_parameters().items():
        constraints = []
        for _, _, cs in takers:
            constraints += [c for c in cs if c not in constraints]
        methods = [method for method, _, _ in takers]
        whose = "every method" if methods == encoder_names() else ", ".join(methods)
        default = repr(DEFAULT_DEVICE) if param == "device" else _default_words(takers)
        group.add_argument(
            param_flag(param),
            dest=param,
            type=_param_type(constraints),
            default=None,
            metavar=param.upper(),
            help=f"{param} of {whose}: {_describe(constraints)} (default: {default})" if constraints
            else f"{param} of {whose} (default: {default})",
        )


def _make_encoder(args):
    """The encoder the ``fit`` arguments describe: the registered method with the parameters given."""
    encoder_class = get_encoder(args.method)
    accepted = set(encoder_class().get_params())
    given = {param: getattr(args, param) for param in encoder_parameters() if getattr(args, param) is not None}
    refused = [(param_flag(param), param) for param in given if param not in accepted]
    if refused:
        raise InputError(_flags_refused(refused, args.method))
    if "device" in accepted:
        given.setdefault("device", DEFAULT_DEVICE)
    if "verbose" in accepted:
        given["verbose"] = 0 if args.quiet else 1
    encoder = encoder_class(**given)
    if hasattr(encoder, "_validate_params"):
        encoder._validate_params()  # before reading the data: a bad value costs no training
    return encoder


def _parameter_names(method):
    return set(get_encoder(method)().get_params())


def _flags_refused(refused, method):
    """The message for flags that set parameters ``method`` does not have: which methods have them."""
    flags = " and ".join(flag for flag, _ in refused)
    verb = "applies" if len(refused) == 1 else "apply"
    wanted = {param for _, param in refused}
    takers = [name for name in encoder_names() if wanted <= _parameter_names(name)]
    if not takers:
        return f"{flags} {verb} to no method; leave {'it' if len(refused) == 1 else 'them'} out."
    return f"{flags} {verb} to --method {' or '.join(takers)} only, not {method}."


def _standardized(X, chunk_rows=65_536):
    """``(scaler, rows)``: a StandardScaler fitted chunk by chunk on ``X``, and ``X`` through it.

    Streamed features (HDF5) stay streamed: the rows are scaled as the encoder reads them.
    """
    from sklearn.preprocessing import StandardScaler

    from ._streaming import StreamedRows, is_streamed, iter_row_chunks

    scaler = StandardScaler()
    for _, rows in iter_row_chunks(X, chunk_rows):
        scaler.partial_fit(rows)
    if is_streamed(X):
        return scaler, StreamedRows(_TransformedRows(X, scaler))
    return scaler, scaler.transform(X)


def _fit(encoder, X, y):
    """``encoder.fit(X, y)``; a training that diverged is the data's or the parameters' fault, not a bug."""
    try:
        return encoder.fit(X, y)
    except TrainingDivergedError as exc:
        # The encoders' message for a loss gone NaN or infinite names its cause and the way out.
        raise InputError(f"{exc} The command standardises with --standardize.") from exc


def cmd_fit(args):
    import joblib

    from .io import open_features

    encoder = _make_encoder(args)
    check_output(args, "--out", args.out, inputs=("--features", "--labels"))
    X = open_features(args.features, name="--features")
    y = _fit_labels(args, X.shape[0])
    bits = f" ({encoder.n_bits} bits)" if hasattr(encoder, "n_bits") else ""
    _say(
        args,
        f"fitting {type(encoder).__name__}{bits} on {X.shape[0]:,} x {X.shape[1]} features"
        + (", standardised" if args.standardize else ""),
    )
    start = time.perf_counter()
    if args.standardize:
        from sklearn.pipeline import Pipeline

        scaler, rows = _standardized(X)
        model = Pipeline([("standardscaler", scaler), (args.method, _fit(encoder, rows, y))])
    else:
        model = _fit(encoder, X, y)
    _write_atomically(args.out, lambda tmp: joblib.dump(model, tmp))
    where = f" on {encoder.device_}" if hasattr(encoder, "device_") else ""
    _say(args, f"trained in {time.perf_counter() - start:.1f} s{where}; wrote {args.out}")
    return 0


def _fit_labels(args, n_rows):
    """The labels of ``fit``: required by supervised methods, not read for the others (they ignore them)."""
    from .io import read_labels

    if not encoder_spec(args.method).supervised:
        return None
    if args.labels is None:
        raise InputError(f"--method {args.method} learns from labels: give --labels.")
    y = read_labels(args.labels, name="--labels")
    if len(y) != n_rows:
        raise InputError(
            f"--features has {n_rows} rows but --labels has {len(y)}; they must describe the same "
            "samples."
        )
    return y


# --------------------------------------------------------------------------------------------------
# skhash encode
# --------------------------------------------------------------------------------------------------


def _progress_rows(X, desc, args):
    """``X`` wrapped so that reading it advances a progress bar; returns ``(X, bar)``."""
    from tqdm.auto import tqdm

    from ._streaming import StreamedRows

    bar = tqdm(total=X.shape[0], desc=desc, unit="rows", unit_scale=True, disable=args.quiet)
    return StreamedRows(X, on_read=bar.update), bar


def cmd_encode(args):
    import joblib

    from .io import open_features, split_spec

    out_path, out_key = split_spec(args.out)
    out_key = out_key or "codes"
    check_output(args, "--out", out_path, inputs=("--features", "--recalibrate", "--model"), key=out_key)
    if args.save_model:
        if args.recalibrate is None:
            raise InputError("--save-model saves a recalibrated model; pass --recalibrate too.")
        check_output(args, "--save-model", args.save_model, inputs=("--features", "--recalibrate", "--model"))
        if _same_file(args.save_model, out_path) or os.path.abspath(args.save_model) == os.path.abspath(out_path):
            raise InputError("--save-model and --out name the same file; choose two.")
    model = _load_model(args.model)
    X = open_features(args.features, name="--features")
    _check_features_width(model, X, "--features")
    if args.recalibrate is not None:
        source_spec = args.features if args.recalibrate is True else args.recalibrate
        source = X if args.recalibrate is True else open_features(args.recalibrate, name="--recalibrate")
        _check_features_width(model, source, "--recalibrate")
        rows, bar = _progress_rows(source, "recalibrate", args)
        with bar:
            _recalibrate(model, rows)
        if args.save_model:
            _write_atomically(args.save_model, lambda tmp: joblib.dump(model, tmp))
    attrs = {
        "features": str(args.features),
        "recalibrated_on": "" if args.recalibrate is None else str(source_spec),
    }
    if os.path.exists(out_path):  # a file of other data sets: the library's writer adds this one
        _write_codes(args, model, X, out_path, out_key, attrs)
    else:  # a new file: all of it, or nothing
        _write_atomically(out_path, lambda tmp: _write_codes(args, model, X, tmp, out_key, attrs))
    n_bits = final_encoder(model).coef_.shape[1]
    _say(args, f"wrote {X.shape[0]:,} codes of {n_bits} bits to {out_path}:{out_key}")
    return 0


def _write_codes(args, model, X, path, key, attrs):
    from .io import write_codes

    check_not_interrupted()
    with _dask_client(args) as client:
        if client is None:
            write_codes(
                model,
                X,
                path,
                key,
                packed=not args.unpacked,
                chunk_rows=args.chunk_rows,
                overwrite=args.overwrite,
                progress=not args.quiet,
                attrs=attrs,
            )
        else:
            from .dask import from_features, write_codes_dask

            write_codes_dask(
                model,
                from_features(args.features, block_rows=args.chunk_rows),
                path,
                key,
                packed=not args.unpacked,
                overwrite=args.overwrite,
                progress=not args.quiet,
                attrs=attrs,
                client=client,
            )
    check_not_interrupted()


def _check_features_width(model, X, what):
    if X.shape[1] != model.n_features_in_:
        raise InputError(
            f"{what} has {X.shape[1]} features per row but the model was trained on {model.n_features_in_}; "
            "encode descriptors of the kind it was trained on."
        )


# --------------------------------------------------------------------------------------------------
# skhash search
# --------------------------------------------------------------------------------------------------


def cmd_search(args):
    from .io import read_codes, write_rankings

    check_output(args, "--out", args.out, inputs=("--db", "--queries", "--rerank", "--query-features"))
    _check_rerank_flags(args)
    _check_algorithm_flag(args)
    db, db_bits = _database_codes(args.db)
    if args.queries is not None:
        queries, q_bits = read_codes(args.queries)
        if q_bits != db_bits:
            raise InputError(
                f"--queries holds {q_bits}-bit codes but --db holds {db_bits}-bit codes; encode both with "
                "the same model."
            )
    k = args.n_neighbors
    n_db = db.shape[0]
    limit = n_db - 1 if args.queries is None else n_db
    if k > limit:
        raise InputError(
            f"-k {k} asks for more neighbours than the database offers ({limit}"
            f"{', each code left out of its own result' if args.queries is None else ''}); lower -k."
        )
    with _dask_client(args) as client:
        if client is not None:
            distances, indices = _search_on_dask(args, client, k, None if args.queries is None else queries)
        else:
            distances, indices = _search_here(args, db, k, None if args.queries is None else queries)
    attrs = {"n_bits": db_bits, "db": str(args.db), "queries": "" if args.queries is None else str(args.queries)}
    if args.rerank is not None:
        attrs.update(rerank=str(args.rerank), shortlist=args.shortlist, metric=args.rerank_metric)
    _write_atomically(args.out, lambda tmp: write_rankings(tmp, distances, indices, attrs=attrs))
    _say(args, f"wrote the top {k} of {indices.shape[0]:,} queries to {args.out}")
    return 0


def _database_codes(spec):
    """--db as packed codes and their bit count, its rows not read when the search can read them in blocks.

    Packed codes of whole bytes (what ``skhash encode`` writes for 8, 16, ..., 128 bits) stay in their
    file: the CPU search reads them block by block (out of core), a GPU or Dask search reads them itself.
    Other layouts are read and checked here: bit columns, whose values must be 0 or 1, and packed codes
    with padding bits, which must be zero.
    """
    from .io import code_file_layout, open_h5, read_codes

    arr = open_h5(spec)
    n_bits, packed = code_file_layout(arr, spec)
    if packed and n_bits % 8 == 0:
        return arr, n_bits
    return read_codes(spec)


def _check_algorithm_flag(args):
    """--algorithm mih runs on the CPU of this process: not with --device cuda, nor on Dask."""
    if args.algorithm != "mih":
        return
    if args.device != "cpu":
        raise InputError(f"--algorithm mih runs on the CPU; drop --device {args.device} or use --algorithm auto.")
    if args.scheduler is not None or args.local_cluster is not None:
        raise InputError("--algorithm mih runs in this process; drop --scheduler/--local-cluster.")


def _check_rerank_flags(args):
    """--shortlist, --rerank-metric and --query-features belong to --rerank; -k must fit the shortlist."""
    if args.rerank is None:
        given = [flag for flag, value in (("--shortlist", args.shortlist), ("--query-features", args.query_features),
                                          ("--rerank-metric", args.rerank_metric)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply with --rerank FEATURES.")
        return
    if args.scheduler is not None or args.local_cluster is not None:
        raise InputError("--rerank runs in this process; drop --scheduler/--local-cluster.")
    if (args.queries is None) != (args.query_features is None):
        raise InputError(
            "--rerank with --queries needs --query-features (the queries' float descriptors), and without "
            "--queries the database's own features are the queries: pass both or neither."
        )
    args.shortlist = 100 if args.shortlist is None else args.shortlist
    args.rerank_metric = args.rerank_metric or "cosine"
    if args.n_neighbors > args.shortlist:
        raise InputError(f"-k {args.n_neighbors} is more than --shortlist {args.shortlist}; raise --shortlist.")


def _search_here(args, db, k, queries):
    from tqdm.auto import tqdm

    from .neighbors import HammingNeighbors

    nn = HammingNeighbors(
        n_neighbors=k, packed=True, algorithm=args.algorithm, device=args.device, n_jobs=args.n_jobs
    ).fit(db)
    if args.rerank is not None:
        return _rerank(args, nn, k, queries)
    if queries is None:
        _say(args, f"searching {db.shape[0]:,} codes against each other")
        return nn.kneighbors()
    # One call: the searcher cuts the queries into blocks itself, so the bar can only mark the end.
    with tqdm(total=len(queries), desc="search", unit="queries", unit_scale=True, disable=args.quiet) as bar:
        result = nn.kneighbors(queries)
        bar.update(len(queries))
    return result


def _rerank(args, nn, k, queries):
    """The Hamming shortlist of --shortlist rows re-ordered by the float descriptors of --rerank."""
    from .io import open_h5
    from .neighbors import RerankedNeighbors

    features = open_h5(args.rerank)  # read only at the shortlist's rows
    query_features = None if args.query_features is None else open_h5(args.query_features)[...]
    rr = RerankedNeighbors(nn, features, shortlist=args.shortlist, metric=args.rerank_metric, n_neighbors=k).fit()
    _say(args, f"re-ranking shortlists of {min(args.shortlist, nn.n_samples_fit_):,} by {args.rerank_metric}")
    return rr.kneighbors(queries, query_features)


def _search_on_dask(args, client, k, queries):
    """Shards of the database on the workers, query blocks broadcast, top-k lists merged exactly."""
    from .dask import DaskHammingNeighbors, from_codes

    db, _ = from_codes(args.db)
    nn = DaskHammingNeighbors(
        n_neighbors=k,
        packed=True,
        client=client,
        query_block_size=args.chunk_rows,
        device=args.device,
        n_jobs=args.n_jobs,
    ).fit(db)
    _say(args, f"searching on Dask ({len(client.scheduler_info()['workers'])} workers)")
    return nn.kneighbors() if queries is None else nn.kneighbors(queries)


def _dask_client(args):
    """A Dask client when --scheduler or --local-cluster was given (closed on exit), else None."""
    import contextlib

    if args.scheduler is None and args.local_cluster is None:
        return contextlib.nullcontext(None)
    try:
        from .dask import get_client
    except ImportError as exc:
        raise InputError(f"--scheduler/--local-cluster need Dask: pip install 'scikit-hash[dask]' ({exc}).") from exc
    return get_client(args.scheduler, args.local_cluster, quiet=args.quiet)


def _add_dask_options(p):
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on this Dask scheduler")
    group.add_argument(
        "--local-cluster", type=_positive_int, default=None, metavar="N", help="run on a local Dask cluster of N worker processes"
    )


# --------------------------------------------------------------------------------------------------
# skhash evaluate
# --------------------------------------------------------------------------------------------------


def evaluate(indices, args):
    """Scores of ``indices`` under the protocol ``args`` names, as a dict of name -> float."""
    from . import metrics
    from .io import read_ids, read_labels

    # The metrics check the rankings against the ground truth; what is checked here they cannot see:
    # the command's defaults and the sizes of the files they come from.
    if args.labels is not None:
        y_db = read_labels(args.labels, name="--labels")
        y_q = y_db if args.query_labels is None else read_labels(args.query_labels, name="--query-labels")
        if len(y_q) != indices.shape[0]:
            hint = (
                " (without --query-labels the queries are the database itself)"
                if args.query_labels is None
                else ""
            )
            raise InputError(
                f"the rankings hold {indices.shape[0]} queries but the query labels {len(y_q)}{hint}."
            )
        k = indices.shape[1] if args.at is None else args.at
        return {f"mAP@{k}": metrics.mean_average_precision(y_q, y_db, indices, k=k)}
    if args.revisitop is not None:
        from .datasets._revisitop import read_revisitop  # each protocol imports only its own reader

        imlist, _, gnd = read_revisitop(args.revisitop)
        if indices.size and indices.max() >= len(imlist):
            raise InputError(
                f"the rankings name database row {indices.max()}, but {args.revisitop} has {len(imlist)}."
            )
        scores = {}
        for protocol in metrics.REVISITOP_PROTOCOLS:
            result = metrics.revisitop_map(indices, gnd, protocol=protocol, kappas=(1, 5, 10))
            scores[f"mAP {protocol}"] = result.map
            for kappa, value in zip((1, 5, 10), result.mean_precisions):
                scores[f"mP@{kappa} {protocol}"] = float(value)
        return scores
    if args.index_ids is None or args.query_ids is None:
        raise InputError(
            "--gldv2 needs --index-ids and --query-ids: the image ids of the database and query rows."
        )
    index_ids = read_ids(args.index_ids, name="--index-ids")
    query_ids = read_ids(args.query_ids, name="--query-ids")
    if len(query_ids) != indices.shape[0]:
        raise InputError(
            f"--query-ids has {len(query_ids)} ids but the rankings hold {indices.shape[0]} queries."
        )
    from .datasets import read_gldv2_solution

    try:
        solution = read_gldv2_solution(args.gldv2, index_ids, query_ids)
    except csv.Error as exc:  # e.g. a row longer than the csv module's field limit
        raise InputError(f"--gldv2 {args.gldv2}: not a readable solution CSV ({exc}).") from exc
    k = 100 if args.at is None else args.at
    return {f"mAP@{k}": metrics.gldv2_map(indices, solution, k=k)}


def cmd_evaluate(args):
    from .io import read_rankings

    _, indices = read_rankings(args.ranks)
    scores = evaluate(indices, args)
    if args.json:
        print(json.dumps(scores))
    else:
        for name, value in scores.items():
            print(f"{name}: {value:.6f}")
    return 0


# --------------------------------------------------------------------------------------------------
# skhash compare
# --------------------------------------------------------------------------------------------------

# What the command writes into its --out folder, besides the run store (manifest.json, runs/).
COMPARE_OUTPUTS = ("results.csv", "results.md", "results.png")
COMPARE_GROUPS = ("all", "supervised", "unsupervised", "float")


def cmd_compare(args):
    from .comparison import compare

    from .io import check_output_folder

    folder = args.out
    check_output_folder(folder, name="--out")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"--out {folder!r} is a file; name a folder (made if missing).")
    existing = [name for name in COMPARE_OUTPUTS if os.path.exists(os.path.join(folder, name))]
    if existing and not args.overwrite:
        raise InputError(
            f"--out {folder} holds the results of a finished compare ({', '.join(existing)}); pass --overwrite "
            "to run it again from the start, or choose another folder."
        )
    if os.path.isdir(folder):
        _check_folder_writable("--out", os.path.join(folder, "results.csv"))
    data = _compare_inputs(args)
    plot = not args.no_plot and _matplotlib_or_say(args)
    if (args.scheduler is not None or args.local_cluster is not None) and args.n_jobs not in (None, 1):
        raise InputError("--n-jobs runs processes here; with --scheduler/--local-cluster Dask runs them: pass one.")
    with _dask_client(args) as client, _compare_progress(args) as progress:
        result = compare(
            args.methods, args.n_bits, **data, protocol=args.protocol, k=args.at, n_repeats=args.n_repeats,
            random_state=args.random_state, n_jobs=args.n_jobs, scheduler=client, device=args.device,
            params=_compare_params(args), store=folder, overwrite=args.overwrite, progress=progress,
        )
    check_not_interrupted()
    _write_atomically(os.path.join(folder, "results.csv"), result.to_csv)
    _write_atomically(os.path.join(folder, "results.md"), lambda tmp: _write_text(tmp, _compare_report(result)))
    if plot:
        _write_atomically(os.path.join(folder, "results.png"), lambda tmp: _save_plot(result, tmp))
    _say(args, f"wrote {len(result.table)} runs to {folder}: " + ", ".join(COMPARE_OUTPUTS[: 2 + plot]))
    if not args.quiet:
        print(result.to_markdown())
    return 0


def _compare_inputs(args):
    """The feature sets (in memory: every run searches them), labels and ground truth the flags name."""
    import numpy as np

    from .io import open_features, read_labels

    def features(spec, flag):
        return None if spec is None else np.asarray(open_features(spec, name=flag)[...])

    def labels(spec, flag):
        return None if spec is None else read_labels(spec, name=flag)

    data = dict(
        X_train=features(args.X_train, "--train"), y_train=labels(args.y_train, "--train-labels"),
        X_query=features(args.X_query, "--queries"), y_query=labels(args.y_query, "--query-labels"),
        X_db=features(args.X_db, "--db"), y_db=labels(args.y_db, "--db-labels"),
    )
    if args.standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(data["X_train"])
        for name in ("X_train", "X_query", "X_db"):
            if data[name] is not None:
                data[name] = scaler.transform(data[name])
    data["ground_truth"] = _compare_ground_truth(args, data)
    return data


def _compare_ground_truth(args, data):
    if args.revisitop is not None and args.protocol != "revisitop":
        raise InputError("--revisitop is the ground truth of --protocol revisitop; pass that too.")
    if args.gldv2 is not None and args.protocol != "gldv2":
        raise InputError("--gldv2 is the ground truth of --protocol gldv2; pass that too.")
    if args.protocol == "revisitop" and args.revisitop is not None:
        from .datasets import load_revisitop

        gnd = load_revisitop(args.revisitop)
        if data["X_db"] is not None and gnd.n_db != len(data["X_db"]):
            raise InputError(f"--revisitop {args.revisitop} describes {gnd.n_db} database rows, --db has {len(data['X_db'])}.")
        return gnd.gnd
    if args.protocol == "gldv2" and args.gldv2 is not None:
        from .datasets import read_gldv2_solution
        from .io import read_ids

        if args.index_ids is None or args.query_ids is None:
            raise InputError("--gldv2 needs --index-ids and --query-ids: the image ids of the --db and --queries rows.")
        try:
            return read_gldv2_solution(
                args.gldv2, read_ids(args.index_ids, name="--index-ids"), read_ids(args.query_ids, name="--query-ids")
            )
        except csv.Error as exc:
            raise InputError(f"--gldv2 {args.gldv2}: not a readable solution CSV ({exc}).") from exc
    return None


def _compare_params(args):
    return None if args.max_epochs is None else {"max_epochs": args.max_epochs}


def _compare_progress(args):
    """A context giving ``progress(n_done, n_runs, row)``: a tqdm bar, or one line per run without tqdm."""
    import contextlib

    if args.quiet:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        def say(done, total, row):
            what = "found in --out" if row is None else _run_words(row)
            print(f"[{done}/{total}] {what}", file=sys.stderr, flush=True)

        return contextlib.nullcontext(say)
    return _TqdmProgress(tqdm)


class _TqdmProgress:
    def __init__(self, tqdm):
        self.tqdm, self.bar = tqdm, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def __call__(self, done, total, row):
        if self.bar is None:
            self.bar = self.tqdm(total=total, desc="compare", unit="run")
        self.bar.update(done - self.bar.n)
        if row is not None:
            self.bar.set_postfix_str(_run_words(row), refresh=True)


def _run_words(row):
    return f"{row['method']} {row['n_bits']} bits: mAP {row['map']:.4f}, fit {row['fit_s']:.1f} s"


def _matplotlib_or_say(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _say(args, 'matplotlib is not installed, so no results.png (pip install "scikit-hash[plot]").')
        return False
    return True


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _compare_report(result):
    """results.md: the papers' table of each quality column, and the costs."""
    parts = [f"# skhash compare: {result.metric_name}\n", result.to_markdown("map")]
    for column, title in (
        ("map_easy", "revisitop mAP (easy)"), ("map_hard", "revisitop mAP (hard)"),
        ("p_at_h2", "P@H≤2"), ("separability", "Hamming separability (bits)"),
        ("fit_s", "fit seconds"), ("encode_s", "encode seconds"), ("peak_mem_mib", "peak memory (MiB)"),
    ):
        if result.summary(column):
            parts += [f"\n## {title}\n", result.to_markdown(column, digits=2 if column.endswith(("_s", "mib")) else 4)]
    return "\n".join(parts)


def _save_plot(result, path):
    display = result.plot()
    display.figure_.savefig(path, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(display.figure_)


def _add_compare(sub):
    p = sub.add_parser(
        "compare",
        help="fit many methods at many code lengths and tabulate their retrieval quality",
        description="Fit every method at every code length on --train, search --queries in --db (or --db "
        "against itself) by Hamming distance and score the rankings under --protocol: the field's table "
        "of methods x bits, with P@H<=2, separability, fit and encode seconds and peak memory. Writes "
        "results.csv, results.md and results.png into --out; every finished run is recorded there as "
        "well, so a compare that was interrupted resumes when run again with the same arguments.",
    )
    choices = encoder_names() + list(COMPARE_GROUPS)
    p.add_argument(
        "--methods", nargs="+", choices=choices, default=["all"], metavar="METHOD",
        help="methods, from: " + ", ".join(encoder_names()) + "; or all, supervised, unsupervised, and float "
        "(exact cosine k-NN on the features) (default: all)",
    )
    p.add_argument(
        "--bits", dest="n_bits", type=_positive_int, nargs="+", default=[16, 32, 64], metavar="BITS",
        help="code lengths (default: 16 32 64)",
    )
    p.add_argument("--train", dest="X_train", required=True, metavar="SPEC", help=f"training features, {SPEC_HELP}")
    p.add_argument("--train-labels", dest="y_train", metavar="SPEC", help="their labels (supervised methods)")
    p.add_argument("--queries", dest="X_query", metavar="SPEC", help="query features (not with leave-one-out)")
    p.add_argument("--query-labels", dest="y_query", metavar="SPEC", help="query labels (--protocol map)")
    p.add_argument("--db", dest="X_db", required=True, metavar="SPEC", help="database features, searched")
    p.add_argument("--db-labels", dest="y_db", metavar="SPEC", help="database labels (map, leave-one-out)")
    p.add_argument(
        "--protocol", choices=["map", "leave-one-out", "revisitop", "gldv2"], default="map",
        help="map: queries against --db, mAP@k by labels; leave-one-out: --db against itself; revisitop "
        "(with --revisitop) or gldv2 (with --gldv2, --index-ids, --query-ids) (default: map)",
    )
    p.add_argument("--revisitop", metavar="GND.pkl", help="revisitop ground truth, for --protocol revisitop")
    p.add_argument("--gldv2", metavar="SOLUTION.csv", help="GLDv2 retrieval solution, for --protocol gldv2")
    p.add_argument("--index-ids", metavar="SPEC", help="with --gldv2: the --db rows' image ids")
    p.add_argument("--query-ids", metavar="SPEC", help="with --gldv2: the --queries rows' image ids")
    p.add_argument(
        "-k", "--at", type=_positive_int, default=None,
        help="cut-off of mAP@k (default: the whole database; 100 with gldv2)",
    )
    p.add_argument("--repeats", dest="n_repeats", type=_positive_int, default=1, help="runs per cell, seeds "
                   "random-state, random-state + 1, ... (default: 1)")
    p.add_argument("--random-state", type=int, default=0, help="seed of the first repeat (default: 0)")
    p.add_argument(
        "--epochs", dest="max_epochs", type=_positive_int, default=None,
        help="max_epochs of the deep methods (default: each method's own)",
    )
    p.add_argument(
        "--standardize", action="store_true",
        help="scale every feature to zero mean and unit variance, fitted on --train, before everything",
    )
    p.add_argument("--device", default=DEFAULT_DEVICE, help="where deep methods train: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--n-jobs", type=int, default=None, help="runs at once, in joblib processes (default: 1)")
    _add_dask_options(p)
    p.add_argument(
        "--out", required=True, metavar="FOLDER",
        help="folder for results.csv, results.md, results.png and the record of runs (made if missing)",
    )
    p.add_argument("--no-plot", action="store_true", help="write no results.png (it draws a t-SNE map: seconds)")
    p.set_defaults(func=cmd_compare, cli_words={
        "ground_truth": "--revisitop or --gldv2", "k": "--at", "store": "--out",
    })
    return p


# --------------------------------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------------------------------


def _add_fit(sub, *, method_flags=True):
    p = sub.add_parser(
        "fit",
        help="train a hash encoder on features (labelled, for supervised methods) and save it",
        description="Train a hash encoder on descriptors (with their labels, for supervised methods) and save "
        "it with joblib. HDF5 features are streamed in shuffled windows, so files larger than memory work.",
    )
    p.add_argument("--features", required=True, metavar="SPEC", help=f"training descriptors, {SPEC_HELP}")
    p.add_argument(
        "--labels",
        metavar="SPEC",
        help=f"their labels (1-D, or a 0/1 matrix), {SPEC_HELP}; needed by supervised methods only",
    )
    p.add_argument(
        "--method",
        choices=encoder_names(),
        default="orthohash",
        metavar="METHOD",
        help="hashing method, one of: " + ", ".join(encoder_names()) + " (default: orthohash)",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="scale every feature to zero mean and unit variance first (a StandardScaler fitted on these "
        "features, saved with the model as a Pipeline)",
    )
    p.add_argument("--out", required=True, metavar="MODEL", help="where to save the model (joblib)")
    if method_flags:  # they import every encoder class (and torch): only when fit is the command
        _add_encoder_flags(p)
    p.set_defaults(func=cmd_fit)
    return p


def _add_encode(sub):
    p = sub.add_parser(
        "encode",
        help="turn features into packed binary codes in an HDF5 file",
        description="Encode descriptors with a saved model into packed codes (uint8, np.packbits layout), "
        "chunk by chunk. The model file is a pickle: load only models you trust.",
    )
    p.add_argument("--model", required=True, help="a model saved by 'skhash fit'")
    p.add_argument("--features", required=True, metavar="SPEC", help=f"descriptors to encode, {SPEC_HELP}")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.h5[:KEY]",
        help="where the codes go: data set 'codes' unless KEY is given, in a new file or added to an "
        "existing one (an existing data set is replaced only with --overwrite)",
    )
    p.add_argument(
        "--recalibrate",
        nargs="?",
        const=True,
        default=None,
        metavar="SPEC",
        help="first re-centre the bits on a new domain: on --features when given alone, or on SPEC "
        "(pass the database's features when encoding its queries)",
    )
    p.add_argument("--save-model", default=None, metavar="MODEL", help="also save the recalibrated model")
    p.add_argument(
        "--unpacked", action="store_true", help="write one uint8 column per bit instead of packed bytes"
    )
    p.add_argument(
        "--chunk-rows", type=_positive_int, default=65_536, help="rows encoded at once (default: 65536)"
    )
    _add_dask_options(p)
    p.set_defaults(func=cmd_encode)
    return p


def _add_search(sub):
    p = sub.add_parser(
        "search",
        help="exact Hamming k-nearest neighbours of query codes in a database of codes",
        description="Rank database codes by Hamming distance to each query (ties broken by index) and write "
        "'indices' and 'distances' (n_queries, k) to an HDF5 file.",
    )
    p.add_argument("--db", required=True, metavar="SPEC", help=f"database codes, {SPEC_HELP}")
    p.add_argument(
        "--queries",
        default=None,
        metavar="SPEC",
        help="query codes (default: the database against itself, each code left out of its own result)",
    )
    p.add_argument(
        "-k", "--n-neighbors", type=_positive_int, default=100, help="neighbours per query (default: 100)"
    )
    p.add_argument("--out", required=True, metavar="FILE.h5", help="where the rankings go")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--algorithm",
        choices=("auto", "brute", "mih"),
        default="auto",
        help="auto (default): exact multi-index hashing where it pays (large databases, many queries), "
        "else the scan; brute: always the scan; mih: always multi-index hashing (CPU only). Results are "
        "the same; only speed and memory differ",
    )
    p.add_argument("--n-jobs", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=16_384,
        help="with --scheduler/--local-cluster: queries sent to the shards at once (default: 16384)",
    )
    rerank = p.add_argument_group("re-ranking by float descriptors")
    rerank.add_argument(
        "--rerank",
        default=None,
        metavar="FEATURES",
        help=f"database float descriptors, {SPEC_HELP}, one row per --db code: each query's Hamming "
        "shortlist is re-ordered by them (read only at the shortlist's rows); distances become 1 - cosine "
        "or -inner product",
    )
    rerank.add_argument(
        "--query-features",
        default=None,
        metavar="SPEC",
        help="with --queries: the queries' float descriptors, one row per query code, read into memory",
    )
    rerank.add_argument(
        "--shortlist", type=_positive_int, default=None, help="Hamming candidates per query (default: 100)"
    )
    rerank.add_argument(
        "--rerank-metric", choices=("cosine", "ip"), default=None, help="cosine (default) or ip (inner product)"
    )
    _add_dask_options(p)
    p.set_defaults(func=cmd_search)
    return p


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="score rankings: mAP with labels, revisitop E/M/H, or GLDv2 mAP@100",
        description="Score the rankings of 'skhash search' under one protocol and print the numbers.",
    )
    p.add_argument("--ranks", required=True, metavar="FILE.h5", help="rankings written by 'skhash search'")
    protocol = p.add_mutually_exclusive_group(required=True)
    protocol.add_argument("--labels", metavar="SPEC", help="database labels: category-level mAP@k")
    protocol.add_argument(
        "--revisitop", metavar="GND.pkl", help="revisitop ground truth: ROxf/RPar E/M/H mAP"
    )
    protocol.add_argument("--gldv2", metavar="SOLUTION.csv", help="GLDv2 retrieval solution: mAP@100")
    p.add_argument(
        "--query-labels", metavar="SPEC", help="query labels, with --labels (default: the database's)"
    )
    p.add_argument("--index-ids", metavar="SPEC", help="with --gldv2: database image ids (.h5/.npy/.txt)")
    p.add_argument("--query-ids", metavar="SPEC", help="with --gldv2: query image ids (.h5/.npy/.txt)")
    p.add_argument(
        "-k",
        "--at",
        type=_positive_int,
        default=None,
        help="cut-off of mAP@k (default: all retrieved with --labels, 100 with --gldv2)",
    )
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.set_defaults(func=cmd_evaluate)
    return p


def _positive_int(value, what="a positive integer"):
    """argparse's type for counts: the library's positive-integer check, reported as argparse does."""
    try:
        return check_positive_int(int(value), "value")
    except ValueError:  # not an integer, or not positive (InputError is a ValueError)
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}") from None


def _add_demo(sub):
    from . import _demo

    p = sub.add_parser(
        "demo",
        help="train on scikit-learn's digits and print test mAP",
        description="Train hash encoders on scikit-learn's digits (real handwritten digits) and print the test "
        "rows' leave-one-out mAP@all, and draw their Hamming distances. The arguments are checked before "
        "any training.",
    )
    p.add_argument(
        "--bits", type=_positive_int, nargs="+", default=list(_demo.DEFAULT_BITS), metavar="BITS",
        help="code lengths (default: " + " ".join(map(str, _demo.DEFAULT_BITS)) + ")",
    )
    p.add_argument("--device", default="auto", help="where to train: cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--methods", nargs="+", choices=encoder_names() + ["all"], default=list(_demo.DEFAULT_METHODS),
        metavar="METHOD",
        help="encoders, from: " + ", ".join(encoder_names()) + "; or 'all' (default: "
        + " ".join(_demo.DEFAULT_METHODS) + ")",
    )
    p.add_argument(
        "--out", default=_demo.DEFAULT_OUT,
        help=f"the picture's path (default: ./{_demo.DEFAULT_OUT}, which the demo replaces; any other "
        "existing file only with --overwrite)",
    )
    p.add_argument("--no-plot", action="store_true", help="print the table only; write no picture")
    p.set_defaults(func=cmd_demo)
    return p


def cmd_demo(args):
    from . import _demo

    if not args.no_plot:  # the demo's own picture is replaced; anything else only when asked
        own = os.path.abspath(args.out) == os.path.abspath(_demo.DEFAULT_OUT)
        check_output(argparse.Namespace(overwrite=args.overwrite or own), "--out", args.out)
    return _demo.run(args)


def build_parser(*, method_flags=True):
    """The ``skhash`` parser; ``method_flags=False`` leaves out fit's per-method flags (they import torch)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skhash", description="Learn binary hash codes and search them by Hamming distance."
    )
    parser.add_argument(
        "--version", action="version", version=f"skhash {__version__} (distribution scikit-hash)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_fit, _add_encode, _add_search, _add_evaluate, _add_compare):
        p = add(sub, method_flags=method_flags) if add is _add_fit else add(sub)
        if add is not _add_demo:
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
        if add is not _add_evaluate:
            p.add_argument(
                "--overwrite", action="store_true", help="replace an existing output (never an input)"
            )
        p.set_defaults(cli_flags={**_flags_of(p), **(p.get_default("cli_words") or {})})
    return parser


def reference_rst(width=92):
    """The command reference in reStructuredText: each subcommand's ``--help``, from the parser itself.

    ``docs/conf.py`` writes it into the documentation at every build, so the page cannot drift from the
    command.
    """
    parser = build_parser()
    lines = []
    for parser_of_page in [parser, *_subparsers(parser).values()]:
        parser_of_page.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=width)
        title = f"``{parser_of_page.prog}``"
        lines += [title, "-" * len(title), "", ".. code-block:: text", ""]
        lines += ["   " + line if line else "" for line in parser_of_page.format_help().splitlines()]
        lines.append("")
    return "\n".join(lines)


def _subparsers(parser):
    """``{name: subparser}`` of ``parser``'s subcommands, in order."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _command_of(argv):
    """The subcommand ``argv`` names (its first word that is not an option), or None."""
    return next((a for a in argv if not str(a).startswith("-")), None)


def _is_parameter_error(exc):
    from sklearn.utils._param_validation import InvalidParameterError

    return isinstance(exc, InvalidParameterError)


def main(argv=None):
    """Run the ``skhash`` command with ``argv`` (``sys.argv[1:]`` when None); returns the exit status.

    Input errors end it with one line on stderr and status 1, Ctrl-C with one line and status 130; any
    other exception is a bug and keeps its traceback.
    """
    global _interrupted
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    _interrupted = False
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_sigint) if in_main_thread else None
    try:
        args = build_parser(method_flags=command == "fit").parse_args(argv)
        try:
            status = args.func(args)
            check_not_interrupted()
            return status
        except ValueError as exc:  # InputError, and scikit-learn's parameter checks
            if not (isinstance(exc, InputError) or _is_parameter_error(exc)):
                raise
            print(f"skhash {args.command}: error: {in_cli_words(str(exc), args.cli_flags)}", file=sys.stderr)
            return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"skhash{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
