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
import json
import os
import sys
import time

from sklearn.utils._param_validation import InvalidParameterError

from ._validation import InputError, check_positive_int
from .encoders._registry import encoder_names, get_encoder

EXIT_INPUT_ERROR = 1
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
    if not (hasattr(model, "transform") and hasattr(model, "recalibrate") and hasattr(model, "coef_")):
        raise InputError(
            f"{path}: holds a {type(model).__name__}, not a fitted skhash encoder; make one with "
            "'skhash fit'."
        )
    return model


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# skhash fit
# --------------------------------------------------------------------------------------------------


def _epochs(value):
    if value == "auto":
        return value
    return _positive_int(value, "a positive integer or 'auto'")


def _scale(value):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number or 'auto', got {value!r}") from None


# The flags of ``fit`` that set an encoder parameter when given: (flag, attribute of args, parameter).
# Left out, the method's own default applies (device excepted: the command trains where it can).
ENCODER_FLAGS = (
    ("--bits", "bits", "n_bits"),
    ("--margin", "margin", "margin"),
    ("--scale", "scale", "scale"),
    ("--epochs", "epochs", "max_epochs"),
    ("--device", "device", "device"),
    ("--batch-size", "batch_size", "batch_size"),
    ("--random-state", "random_state", "random_state"),
)
DEFAULT_DEVICE = "auto"


def _parameter_names(method):
    return set(get_encoder(method)().get_params())


def _make_encoder(args):
    """The encoder the ``fit`` arguments describe: the registered method with the parameters given."""
    accepted = _parameter_names(args.method)
    given = [(flag, param, getattr(args, dest)) for flag, dest, param in ENCODER_FLAGS]
    given = [(flag, param, value) for flag, param, value in given if value is not None]
    refused = [(flag, param) for flag, param, _ in given if param not in accepted]
    if refused:
        raise InputError(_flags_refused(refused, args.method))
    params = {param: value for _, param, value in given}
    if "device" in accepted:
        params.setdefault("device", DEFAULT_DEVICE)
    if "verbose" in accepted:
        params["verbose"] = 0 if args.quiet else 1
    return get_encoder(args.method)(**params)


def _flags_refused(refused, method):
    """The message for flags that set parameters ``method`` does not have: which methods have them."""
    flags = " and ".join(flag for flag, _ in refused)
    verb = "applies" if len(refused) == 1 else "apply"
    wanted = {param for _, param in refused}
    takers = [name for name in encoder_names() if wanted <= _parameter_names(name)]
    if not takers:
        return f"{flags} {verb} to no method; leave {'it' if len(refused) == 1 else 'them'} out."
    return f"{flags} {verb} to --method {' or '.join(takers)} only, not {method}."


def cmd_fit(args):
    import joblib

    from .io import check_output_folder, open_features, read_labels

    check_output_folder(args.out, name="--out")
    X = open_features(args.features, name="--features")
    y = read_labels(args.labels, name="--labels")
    if len(y) != X.shape[0]:
        raise InputError(
            f"--features has {X.shape[0]} rows but --labels has {len(y)}; they must describe the same "
            "samples."
        )
    encoder = _make_encoder(args)
    _say(
        args,
        f"fitting {type(encoder).__name__} ({encoder.n_bits} bits) on {X.shape[0]:,} x {X.shape[1]} features",
    )
    start = time.perf_counter()
    encoder.fit(X, y)
    joblib.dump(encoder, args.out)
    _say(args, f"trained in {time.perf_counter() - start:.1f} s on {encoder.device_}; wrote {args.out}")
    return 0


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

    from .io import check_output_folder, open_features, split_spec, write_codes

    model = _load_model(args.model)
    X = open_features(args.features, name="--features")
    _check_features_width(model, X, "--features")
    out_path, out_key = split_spec(args.out)
    check_output_folder(out_path, name="--out")
    if args.recalibrate is not None:
        source_spec = args.features if args.recalibrate is True else args.recalibrate
        source = X if args.recalibrate is True else open_features(args.recalibrate, name="--recalibrate")
        _check_features_width(model, source, "--recalibrate")
        rows, bar = _progress_rows(source, "recalibrate", args)
        with bar:
            model.recalibrate(rows)
        if args.save_model:
            check_output_folder(args.save_model, name="--save-model")
            joblib.dump(model, args.save_model)
    elif args.save_model:
        raise InputError("--save-model saves a recalibrated model; pass --recalibrate too.")
    attrs = {
        "features": str(args.features),
        "recalibrated_on": "" if args.recalibrate is None else str(source_spec),
    }
    with _dask_client(args) as client:
        if client is None:
            write_codes(
                model,
                X,
                out_path,
                out_key or "codes",
                packed=not args.unpacked,
                chunk_rows=args.chunk_rows,
                overwrite=True,
                progress=not args.quiet,
                attrs=attrs,
            )
        else:
            from .dask import from_features, write_codes_dask

            write_codes_dask(
                model,
                from_features(args.features, block_rows=args.chunk_rows),
                out_path,
                out_key or "codes",
                packed=not args.unpacked,
                overwrite=True,
                progress=not args.quiet,
                attrs=attrs,
                client=client,
            )
    _say(
        args, f"wrote {X.shape[0]:,} codes of {model.coef_.shape[1]} bits to {out_path}:{out_key or 'codes'}"
    )
    return 0


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
    from .io import check_output_folder, read_codes, write_rankings

    check_output_folder(args.out, name="--out")
    db, db_bits = read_codes(args.db)
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
    write_rankings(args.out, distances, indices, attrs=attrs, overwrite=True)
    _say(args, f"wrote the top {k} of {indices.shape[0]:,} queries to {args.out}")
    return 0


def _search_here(args, db, k, queries):
    from tqdm.auto import tqdm

    from .neighbors import HammingNeighbors

    nn = HammingNeighbors(n_neighbors=k, packed=True, device=args.device, n_jobs=args.n_jobs).fit(db)
    if queries is None:
        _say(args, f"searching {db.shape[0]:,} codes against each other")
        return nn.kneighbors()
    # One call: the searcher cuts the queries into blocks itself, so the bar can only mark the end.
    with tqdm(total=len(queries), desc="search", unit="queries", unit_scale=True, disable=args.quiet) as bar:
        result = nn.kneighbors(queries)
        bar.update(len(queries))
    return result


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
    from .datasets import load_revisitop, read_gldv2_solution
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
        gnd = load_revisitop(args.revisitop)
        if indices.size and indices.max() >= gnd.n_db:
            raise InputError(
                f"the rankings name database row {indices.max()}, but {args.revisitop} has {gnd.n_db}."
            )
        scores = {}
        for protocol in metrics.REVISITOP_PROTOCOLS:
            result = metrics.revisitop_map(indices, gnd.gnd, protocol=protocol, kappas=(1, 5, 10))
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
    solution = read_gldv2_solution(args.gldv2, index_ids, query_ids)
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
# the parser
# --------------------------------------------------------------------------------------------------


def _add_fit(sub):
    p = sub.add_parser(
        "fit",
        help="train a hash encoder on labelled features and save it",
        description="Train a hash encoder on labelled descriptors and save it with joblib. HDF5 features are "
        "streamed in shuffled windows, so files larger than memory work.",
    )
    p.add_argument("--features", required=True, metavar="SPEC", help=f"training descriptors, {SPEC_HELP}")
    p.add_argument(
        "--labels", required=True, metavar="SPEC", help=f"their labels (1-D, or a 0/1 matrix), {SPEC_HELP}"
    )
    p.add_argument(
        "--method", choices=encoder_names(), default="orthohash", help="hashing method (default: orthohash)"
    )
    # The method's own defaults apply to what is left out; the numbers in the help are orthohash's.
    p.add_argument("--bits", type=int, default=None, help="code length (default: the method's, 64)")
    p.add_argument("--margin", type=float, default=None, help="OrthoHash cosine margin m (default: 0.2)")
    p.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help="OrthoHash logit scale s, a number or 'auto' (default: sqrt(bits))",
    )
    p.add_argument(
        "--epochs",
        type=_epochs,
        default=None,
        help="passes over the data, or 'auto' (default: the method's, 'auto': 10, more on small data)",
    )
    p.add_argument("--device", default=None, help=f"cpu, cuda, cuda:N or auto (default: {DEFAULT_DEVICE})")
    p.add_argument(
        "--batch-size", type=int, default=None, help="samples per optimiser step (default: the method's, 256)"
    )
    p.add_argument("--random-state", type=int, default=None, help="seed, for a reproducible model")
    p.add_argument("--out", required=True, metavar="MODEL", help="where to save the model (joblib)")
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
        help="where the codes go (data set 'codes' unless KEY is given; it is replaced if present)",
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
    p.add_argument("--n-jobs", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=16_384,
        help="with --scheduler/--local-cluster: queries sent to the shards at once (default: 16384)",
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


def build_parser():
    from . import _demo

    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skhash", description="Learn binary hash codes and search them by Hamming distance."
    )
    parser.add_argument(
        "--version", action="version", version=f"skhash {__version__} (distribution scikit-hash)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train on scikit-learn's digits and print test mAP",
        description="Train hash encoders on scikit-learn's digits (real handwritten digits) and print the test "
        "rows' leave-one-out mAP@all.",
    )
    _demo.add_arguments(demo)
    demo.set_defaults(func=_demo.run)
    for add in (_add_fit, _add_encode, _add_search, _add_evaluate):
        p = add(sub)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # Mistakes in the input, as the library reports them. Anything else is a bug: it keeps its traceback.
    except (InputError, InvalidParameterError) as exc:
        print(f"skhash {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
