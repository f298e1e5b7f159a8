"""The ``skhash`` command: fit an encoder, encode descriptors, search codes, evaluate rankings.

Every subcommand reads features, labels and codes from ``file.h5:key`` (an HDF5 data set; the key may be
left out when the file holds one) or from a ``.npy`` file, and streams large inputs in chunks::

    skhash fit --features train.h5:feats --labels train.h5:labels --bits 128 --out model.joblib
    skhash encode --model model.joblib --features db.h5:feats --out db_codes.h5 --recalibrate
    skhash encode --model model.joblib --features q.h5:feats --out q_codes.h5 --recalibrate db.h5:feats
    skhash search --db db_codes.h5 --queries q_codes.h5 -k 100 --out ranks.h5
    skhash evaluate --ranks ranks.h5 --revisitop gnd_roxford5k.pkl

Mistakes in the inputs (a missing file or key, a shape that does not fit) end the command with a
one-line message on stderr and exit status 1. Model files are joblib pickles, and loading a pickle can
run code: load only models you made or trust, as with scikit-learn.
"""

import argparse
import json
import os
import pickle
import sys
import time

EXIT_INPUT_ERROR = 1
METHODS = ("orthohash", "csq", "greedyhash")
SPEC_HELP = "FILE.h5[:KEY] or FILE.npy"


class InputError(Exception):
    """A mistake in what the user passed: reported as one line, without a traceback."""


# --------------------------------------------------------------------------------------------------
# reading inputs
# --------------------------------------------------------------------------------------------------


def _open_features(spec, what="--features"):
    """Features that stream: an h5py data set, or a memory-mapped .npy marked for row-chunk reading."""
    import numpy as np

    from .datasets import open_h5
    from .encoders._data import StreamedRows

    X = open_h5(spec)
    if len(X.shape) != 2:
        raise InputError(f"{what} {spec}: features must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if X.shape[0] == 0:
        raise InputError(f"{what} {spec}: holds no rows.")
    return StreamedRows(X) if isinstance(X, np.ndarray) else X


def _read_labels(spec, what="--labels"):
    import numpy as np

    from .datasets import open_h5

    y = np.asarray(open_h5(spec)[...])
    if y.ndim not in (1, 2):
        raise InputError(
            f"{what} {spec}: labels must be 1-D, or a 2-D 0/1 indicator matrix; got shape {y.shape}."
        )
    if y.dtype.kind in "SO":  # h5py returns strings as bytes
        text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in y.reshape(-1)]
        y = np.array(text).reshape(y.shape)
    return y


def _read_ids(spec, what):
    """Image ids, one per row: an HDF5 / .npy string array, or a text file with one id per line."""
    import numpy as np

    path = os.fspath(spec)
    if path.endswith((".txt", ".csv", ".lst")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: id list not found: {path!r}.")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    ids = np.asarray(_read_labels(spec, what))
    if ids.ndim != 1:
        raise InputError(f"{what} {spec}: ids must be 1-D, one per row, got shape {ids.shape}.")
    return [str(v) for v in ids]


def _load_model(path):
    import joblib

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model file not found: {path!r}; make one with 'skhash fit ... --out {path}'."
        )
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


def _check_out_dir(path, what="--out"):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{what} {path}: the folder {parent!r} does not exist.")


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# skhash fit
# --------------------------------------------------------------------------------------------------


def _epochs(value):
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {value!r}")
    return n


def _scale(value):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number or 'auto', got {value!r}") from None


def _make_encoder(args):
    """The encoder the ``fit`` arguments describe."""
    from . import CSQEncoder, GreedyHashEncoder, OrthoHashEncoder

    common = dict(
        n_bits=args.bits,
        device=args.device,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        random_state=args.random_state,
        verbose=0 if args.quiet else 1,
    )
    if args.method != "orthohash":
        given = [
            flag for flag, value in (("--margin", args.margin), ("--scale", args.scale)) if value is not None
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise InputError(f"{' and '.join(given)} {verb} to --method orthohash only, not {args.method}.")
        return (CSQEncoder if args.method == "csq" else GreedyHashEncoder)(**common)
    extra = {}
    if args.margin is not None:
        extra["margin"] = args.margin
    if args.scale is not None:
        extra["scale"] = args.scale
    return OrthoHashEncoder(**common, **extra)


def cmd_fit(args):
    import joblib

    _check_out_dir(args.out)
    X = _open_features(args.features)
    y = _read_labels(args.labels)
    if len(y) != X.shape[0]:
        raise InputError(
            f"--features has {X.shape[0]} rows but --labels has {len(y)}; they must describe the same "
            "samples."
        )
    encoder = _make_encoder(args)
    _say(
        args, f"fitting {type(encoder).__name__} ({args.bits} bits) on {X.shape[0]:,} x {X.shape[1]} features"
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

    from .encoders._data import StreamedRows

    bar = tqdm(total=X.shape[0], desc=desc, unit="rows", unit_scale=True, disable=args.quiet)
    return StreamedRows(X, on_read=bar.update), bar


def cmd_encode(args):
    import joblib

    from .datasets import split_spec, write_codes

    model = _load_model(args.model)
    X = _open_features(args.features)
    _check_features_width(model, X, "--features")
    out_path, out_key = split_spec(args.out)
    _check_out_dir(out_path)
    if args.recalibrate is not None:
        source_spec = args.features if args.recalibrate is True else args.recalibrate
        source = X if args.recalibrate is True else _open_features(args.recalibrate, "--recalibrate")
        _check_features_width(model, source, "--recalibrate")
        rows, bar = _progress_rows(source, "recalibrate", args)
        with bar:
            model.recalibrate(rows)
        if args.save_model:
            _check_out_dir(args.save_model, "--save-model")
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
    import h5py

    from .datasets import read_codes

    _check_out_dir(args.out)
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
    with h5py.File(args.out, "a") as f:
        for name, value in (("indices", indices), ("distances", distances)):
            if name in f:
                del f[name]
            f.create_dataset(name, data=value)
        f.attrs["k"] = k
        f.attrs["n_bits"] = db_bits
        f.attrs["db"] = str(args.db)
        f.attrs["queries"] = "" if args.queries is None else str(args.queries)
    _say(args, f"wrote the top {k} of {indices.shape[0]:,} queries to {args.out}")
    return 0


def _search_here(args, db, k, queries):
    import numpy as np
    from tqdm.auto import tqdm

    from .neighbors import HammingNeighbors

    nn = HammingNeighbors(n_neighbors=k, packed=True, device=args.device, n_jobs=args.n_jobs).fit(db)
    if queries is None:
        _say(args, f"searching {db.shape[0]:,} codes against each other")
        return nn.kneighbors()
    n_q = queries.shape[0]
    distances = np.empty((n_q, k), np.int32)
    indices = np.empty((n_q, k), np.int64)
    with tqdm(total=n_q, desc="search", unit="queries", unit_scale=True, disable=args.quiet) as bar:
        for start in range(0, n_q, args.chunk_rows):
            stop = min(n_q, start + args.chunk_rows)
            distances[start:stop], indices[start:stop] = nn.kneighbors(queries[start:stop])
            bar.update(stop - start)
    return distances, indices


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
        raise InputError(f"--scheduler/--local-cluster need Dask: pip install 'skhash[dask]' ({exc}).") from exc
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


def _read_ranks(path):
    import h5py
    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"rankings not found: {path!r}; make them with 'skhash search ... --out {path}'."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file of rankings ({exc}).") from exc
    with f:
        if "indices" not in f:
            raise InputError(
                f"{path}: no 'indices' data set (found {sorted(f)}); make it with 'skhash search'."
            )
        indices = np.asarray(f["indices"][...])
        distances = np.asarray(f["distances"][...]) if "distances" in f else None
    if indices.ndim != 2:
        raise InputError(f"{path}: 'indices' must be 2-D (n_queries, k), got shape {indices.shape}.")
    return indices, distances


def evaluate(indices, args):
    """Scores of ``indices`` under the protocol ``args`` names, as a dict of name -> float."""
    from . import metrics
    from .datasets import load_revisitop, read_gldv2_solution

    if args.labels is not None:
        y_db = _read_labels(args.labels)
        y_q = y_db if args.query_labels is None else _read_labels(args.query_labels, "--query-labels")
        if len(y_q) != indices.shape[0]:
            hint = (
                " (without --query-labels the queries are the database itself)"
                if args.query_labels is None
                else ""
            )
            raise InputError(
                f"the rankings hold {indices.shape[0]} queries but the query labels {len(y_q)}{hint}."
            )
        if indices.size and indices.max() >= len(y_db):
            raise InputError(
                f"the rankings name database row {indices.max()}, but --labels has {len(y_db)} rows; pass "
                "the database's labels."
            )
        k = indices.shape[1] if args.at is None else args.at
        return {f"mAP@{k}": metrics.mean_average_precision(y_q, y_db, indices, k=k)}
    if args.revisitop is not None:
        gnd = load_revisitop(args.revisitop)
        if gnd.n_queries != indices.shape[0]:
            raise InputError(
                f"{args.revisitop} has {gnd.n_queries} queries but the rankings hold {indices.shape[0]}."
            )
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
    index_ids = _read_ids(args.index_ids, "--index-ids")
    query_ids = _read_ids(args.query_ids, "--query-ids")
    if len(query_ids) != indices.shape[0]:
        raise InputError(
            f"--query-ids has {len(query_ids)} ids but the rankings hold {indices.shape[0]} queries."
        )
    solution = read_gldv2_solution(args.gldv2, index_ids, query_ids)
    k = 100 if args.at is None else args.at
    return {f"mAP@{k}": metrics.gldv2_map(indices, solution, k=k)}


def cmd_evaluate(args):
    indices, _ = _read_ranks(args.ranks)
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
        "--method", choices=METHODS, default="orthohash", help="hashing method (default: orthohash)"
    )
    p.add_argument("--bits", type=int, default=64, help="code length (default: 64)")
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
        default="auto",
        help="passes over the data, or 'auto' (default: 10, more on small data)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per optimiser step (default: 256)")
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
        "--chunk-rows", type=_positive_int, default=16_384, help="queries per step (default: 16384)"
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


def _positive_int(value):
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return n


def build_parser():
    from . import _demo

    parser = argparse.ArgumentParser(
        prog="skhash", description="Learn binary hash codes and search them by Hamming distance."
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


def _message(exc):
    # str(KeyError) quotes its message; the message itself is what the user should read.
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return args.func(args)
    try:
        return args.func(args)
    except (InputError, FileNotFoundError, KeyError, ValueError, OSError, pickle.UnpicklingError) as exc:
        print(f"skhash {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
