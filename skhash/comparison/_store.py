"""A comparison's run store: a folder of JSON files, one per finished run, so that a compare that was
interrupted resumes where it stopped.

``manifest.json`` holds what the runs depend on (methods, code lengths, seeds, protocol, parameters,
device, a fingerprint of the data); ``runs/<key>.json`` holds one run's record. Each file is written
under a temporary name and renamed into place (:func:`skhash.io.atomic_output`), so a kill leaves a run
recorded whole or not at all. Everything is JSON: loading a store executes no code.
"""

import json
import os

from .._validation import InputError
from ..io import atomic_output

MANIFEST = "manifest.json"
RUNS = "runs"
FORMAT = 1


class RunStore:
    """The runs recorded in ``folder`` for the comparison that ``manifest`` describes.

    Parameters
    ----------
    folder : str or path-like
        The store's folder; made if missing (its parent must exist).
    manifest : dict
        JSON-serialisable description of the comparison; a folder that holds another comparison's runs
        is refused unless ``overwrite``.
    overwrite : bool, default=False
        Forget the runs recorded in the folder and start again.
    """

    def __init__(self, folder, manifest, *, overwrite=False):
        self.folder = os.fspath(folder)
        self.manifest = {"format": FORMAT, **manifest}
        os.makedirs(os.path.join(self.folder, RUNS), exist_ok=True)
        path = os.path.join(self.folder, MANIFEST)
        if os.path.exists(path) and not overwrite:
            found = _read_json(path)
            if found != json.loads(json.dumps(self.manifest)):
                changed = sorted(k for k in set(found) | set(self.manifest) if found.get(k) != self.manifest.get(k))
                raise InputError(
                    f"{self.folder} holds the runs of another comparison (it differs in: {', '.join(changed)}); "
                    "choose another folder, or pass overwrite=True to start again there."
                )
        else:
            for name in os.listdir(os.path.join(self.folder, RUNS)):
                if name.endswith(".json"):
                    os.remove(os.path.join(self.folder, RUNS, name))
            self._write(path, self.manifest)

    def load(self):
        """``{key: record}`` of the runs recorded so far."""
        runs = os.path.join(self.folder, RUNS)
        return {
            name.removesuffix(".json"): _read_json(os.path.join(runs, name))
            for name in sorted(os.listdir(runs))
            if name.endswith(".json") and not name.startswith(".")
        }

    def save(self, key, record):
        """Record one finished run, whole or not at all."""
        self._write(os.path.join(self.folder, RUNS, f"{key}.json"), record)

    @staticmethod
    def _write(path, obj):
        text = json.dumps(obj, indent=1, allow_nan=False)
        with atomic_output(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable run store file ({exc}); remove it or start again with overwrite.") from exc
