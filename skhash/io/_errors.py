"""Input errors of the file formats that are also the built-in error a caller may expect.

A missing file is an :class:`~skhash._validation.InputError` (the CLI reports it as one line) and a
:class:`FileNotFoundError` (what ``open`` raises, so ``except FileNotFoundError`` keeps working); a
missing key is an InputError and a :class:`KeyError`.
"""

from .._validation import InputError


class InputFileNotFoundError(InputError, FileNotFoundError):
    """A file named in the input does not exist."""


class InputKeyError(InputError, KeyError):
    """A key (an HDF5 data set) named in the input is not in its file."""

    def __str__(self):
        # KeyError's str() quotes its message; this one is a sentence, to be read as written.
        return BaseException.__str__(self)
