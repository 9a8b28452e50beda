"""Read the published outputs of ONE run through the ``current`` view, with :class:`cqube_spark.storage.Storage`.

Input: the output root (local folder or ``s3a://``). ``<output>/_current.json`` names the current run's prefix
(``_runs/<run_id>``); every file is then read under that prefix, so the report never mixes two runs. Without a
pointer (an output written before the atomic switch) the documented paths at the root are read.
Output: :class:`Published` (metadata + a reader of JSON documents). Read only; raises :class:`OutputsUnreadable`
when the outputs cannot be read at all (the job then exits 1 with the reason).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from cqube_spark import storage


class OutputsUnreadable(RuntimeError):
    pass


@dataclass
class Published:
    store: storage.Storage
    base: str           # the run's prefix (or the output root without a pointer)
    metadata: dict

    @property
    def run_id(self) -> str:
        return str(self.metadata.get("run_id", ""))

    def read_json(self, rel: str) -> dict:
        return json.loads(self.store.read_bytes(storage.join(self.base, rel)))


def open_current(store: storage.Storage, output: str) -> Published:
    pointer = storage.join(output, "_current.json")
    try:
        if store.exists(pointer):
            prefix = json.loads(store.read_bytes(pointer))["prefix"]
            base = storage.join(output, prefix)
        else:
            base = output
        meta_uri = storage.join(base, "metadata.json")
        metadata = json.loads(store.read_bytes(meta_uri))
    except Exception as e:  # noqa: BLE001 - any failure here means there is nothing to report on
        raise OutputsUnreadable(f"cannot read the published outputs under {output}: "
                                f"{type(e).__name__}: {e} (run the publish job first)") from e
    if not isinstance(metadata.get("files"), list):
        raise OutputsUnreadable(f"{meta_uri}: no 'files' list; not a cqube-spark metadata.json")
    return Published(store=store, base=base, metadata=metadata)
