"""The bottom layer: the one place for parameter checks, input errors and device resolution.

Everything above imports from here; this module imports nothing of skhash and does not import torch
unless a GPU device is asked for.

:class:`InputError` is skhash's one exception for bad input. It subclasses :class:`ValueError` (so
``except ValueError`` keeps working) and is what the CLI reports as a one-line message: any other
exception reaching the CLI is a bug and is shown as one. scikit-learn's own input checks are wrapped
(:func:`validate_data`, :func:`check_array`) so their messages reach CLI users as InputErrors too.
"""

import contextlib
import functools
import math
import numbers
import os
import warnings

# scikit-learn is imported by the functions that use it, not here: ``import skhash`` and the commands
# that need no estimator (``skhash search --help``, ``skhash evaluate``) start without it.

__all__ = [
    "InputError",
    "TrainingDivergedError",
    "input_errors",
    "check_positive_int",
    "check_nonnegative_real",
    "check_n_jobs",
    "available_cores",
    "threads_for",
    "memory_limit_bytes",
    "validate_data",
    "check_array",
    "validate_params",
    "resolve_device",
    "cuda_available",
]


class InputError(ValueError):
    """Bad input to skhash: the message says what was wrong and what to do."""


class TrainingDivergedError(InputError, RuntimeError):
    """A training whose loss or weights became NaN or infinite.

    It is the data's or the parameters' fault (unscaled features, a learning rate too high), so it is an
    :class:`InputError` and the CLI reports it in one line; it is also a :class:`RuntimeError`, what
    skhash raised for it before, so existing ``except RuntimeError`` handlers keep working.
    """


@contextlib.contextmanager
def input_errors():
    """Re-raise the ValueErrors of scikit-learn's input checks inside the block as :class:`InputError`."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:  # InvalidParameterError included: it subclasses ValueError
        raise InputError(str(exc)) from exc


def validate_data(estimator, *args, **kwargs):
    """scikit-learn's ``validate_data``, raising :class:`InputError` for bad input."""
    from sklearn.utils.validation import validate_data as sklearn_validate_data

    with input_errors():
        return sklearn_validate_data(estimator, *args, **kwargs)


def check_array(array, *args, **kwargs):
    """scikit-learn's ``check_array``, raising :class:`InputError` for bad input."""
    from sklearn.utils.validation import check_array as sklearn_check_array

    with input_errors():
        return sklearn_check_array(array, *args, **kwargs)


def validate_params(estimator):
    """``estimator._validate_params()`` (its ``_parameter_constraints``), raising :class:`InputError`.

    The error is also an ``InvalidParameterError`` (scikit-learn's type), so both kinds of handler
    catch it.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise _invalid_parameter_type()(str(exc)) from exc


@functools.cache
def _invalid_parameter_type():
    """The error of :func:`validate_params`: an InputError and scikit-learn's InvalidParameterError.

    Made on first use, since subclassing scikit-learn's type imports scikit-learn.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    return type("_InvalidParameter", (InputError, InvalidParameterError), {"__module__": __name__})


def __getattr__(name):
    if name == "_InvalidParameter":  # the class's old name, made on first use
        return _invalid_parameter_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value, name, *, allow_none=False):
    """Return ``int(value)`` if it is an integer >= 1 (or None when allowed); else raise InputError."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_nonnegative_real(value, name):
    """Return ``float(value)`` if it is a finite number >= 0; else raise InputError."""
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_real or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def check_n_jobs(n_jobs):
    """scikit-learn's ``n_jobs``: None, a positive thread count, or -1, -2, ... (all cores but ``-n_jobs - 1``)."""
    if n_jobs is None:
        return None
    if not _is_int(n_jobs) or n_jobs == 0:
        raise InputError(
            f"n_jobs must be None, a positive number of threads or a negative one (-1: all cores), got {n_jobs!r}."
        )
    return int(n_jobs)


# Below this many floating-point operations per step (a training step, one pass of a shallow fit's
# products), a second CPU thread costs more in synchronisation than it gives, and on a busy machine far
# more: a thread waiting at a barrier for a descheduled sibling made a 1,257 x 64 ITQ fit take 30 s
# instead of 0.4 s, and a 256 x 64 x 64 training step 21 ms instead of 1.3 ms (benchmarks/bench_busy.py).
PARALLEL_MIN_FLOPS = 200e6
# At most this many threads for a CPU fit when n_jobs is None.
DEFAULT_MAX_THREADS = 2


def available_cores():
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def memory_limit_bytes():
    """Bytes a fit or an index may hold in memory at once: half of what the system has available now.

    Read from ``/proc/meminfo`` (``MemAvailable``), else from the physical memory; ``None`` where
    neither can be read (no check is made then).
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, OSError, ValueError):
        return None


def threads_for(n_jobs, flops):
    """CPU threads for ``flops`` of work at a time, with scikit-learn's meaning of ``n_jobs``.

    ``None`` is the safe default: one thread below :data:`PARALLEL_MIN_FLOPS`, else up to
    :data:`DEFAULT_MAX_THREADS`. ``-1`` is every core, ``-2`` all but one, a positive number that many.
    """
    n_jobs = check_n_jobs(n_jobs)
    cores = available_cores()
    if n_jobs is None:
        return 1 if flops < PARALLEL_MIN_FLOPS else max(1, min(cores, DEFAULT_MAX_THREADS))
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs


def cuda_available():
    """Whether torch is installed and sees a CUDA device (imports torch only when called)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


_warned_fallback = set()


def resolve_device(device, *, fallback="warn"):
    """Turn a ``device`` parameter into ``"cpu"`` or ``"cuda:N"``: the one device resolver.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when there is one, else the CPU).
    fallback : {"warn", "raise"}
        What ``"cuda"`` does without CUDA: train on the CPU with one warning (the encoders), or raise
        an :class:`InputError` (the searchers, whose device is a promise of speed).

    Returns
    -------
    device : str
        ``"cpu"`` or ``"cuda:N"`` (with the index), usable by ``torch.device``.
    """
    if not isinstance(device, str):
        raise InputError(f"device must be a string ('cpu', 'cuda', 'cuda:N' or 'auto'), got {device!r}.")
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    head, _, index = device.partition(":")
    if head != "cuda" or (index and not index.isdigit()):
        raise InputError(f"Unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'.")
    if not cuda_available():
        if fallback == "raise":
            raise InputError(
                f"device={device!r} needs a CUDA GPU, but none is available here (or torch is a CPU "
                "build). Use device 'cpu' or 'auto', or install a CUDA build of torch."
            )
        if device not in _warned_fallback:
            warnings.warn(
                f"device={device!r} was asked for but CUDA is not available; training on the CPU instead. "
                "Pass device='cpu' (or 'auto') to silence this warning.",
                UserWarning,
                stacklevel=3,
            )
            _warned_fallback.add(device)
        return "cpu"
    import torch

    n = torch.cuda.device_count()
    i = int(index) if index else torch.cuda.current_device()
    if i >= n:
        raise InputError(f"device={device!r}, but only {n} CUDA device(s) are visible.")
    return f"cuda:{i}"
