"""Keys ready for cryptographic use, cached in this web process.

Every use reads the key's row (state, version: one primary-key read); the opened
material is kept per (key id, row version). Every state change bumps the row
version, so a disable, a deletion schedule or a material expiry stops all use in
every web process as soon as its operation has succeeded, and cached material is
never used past a state change. Rows may be cached for ``ROW_TTL_S`` seconds
(0 by default) where that read is too dear.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from kms.crypto.envelope import material_context
from kms.crypto.usage import LoadedKey, load_key
from kms.errors import InvalidKeyState, KeyDisabled, NoActiveKeyMaterial, NotFound
from kms.lifecycle import KeyState, MaterialState
from kms.specs import KeySpec, KeyUsage
from models import repo
from models.db import Database
from web.context import Services

ROW_TTL_S = 0.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    project: str
    state: str
    version: int
    spec: KeySpec
    usage: KeyUsage
    material_state: str
    material_version: int


class KeyCache:
    def __init__(self) -> None:
        self._rows: dict[str, tuple[float, KeyRow]] = {}
        self._loaded: dict[str, tuple[int, LoadedKey]] = {}
        self._lock = threading.Lock()

    def _row(self, db: Database, project: str, key_id: str) -> KeyRow:
        now = time.monotonic()
        with self._lock:
            hit = self._rows.get(key_id)
        if ROW_TTL_S > 0 and hit is not None and hit[0] > now and hit[1].project == project:
            return hit[1]
        with db.connect() as connection:
            found = repo.key_use_row(connection, project, key_id)
        if found is None:
            raise NotFound(f"key {key_id} not found; check the key id (it may have been deleted)")
        state, version, spec, usage, material_state, material_version = found
        row = KeyRow(
            key_id, project, state, version, KeySpec(spec), KeyUsage(usage), material_state, material_version
        )
        if ROW_TTL_S > 0:
            with self._lock:
                if len(self._rows) > MAX_ENTRIES:
                    self._rows.clear()
                self._rows[key_id] = (now + ROW_TTL_S, row)
        return row

    def usable(self, svc: Services, project: str, key_id: str) -> LoadedKey:
        """The key, ready for use, or the error saying why it cannot be used now."""
        row = self._row(svc.db, project, key_id)
        if row.state == KeyState.DISABLED:
            raise KeyDisabled(f"key {key_id} is DISABLED; enable it to use it")
        if row.state != KeyState.ACTIVE:
            hint = {
                KeyState.PENDING_IMPORT: "import key material first",
                KeyState.PENDING_DELETION: "cancel the deletion and enable it to use it",
                KeyState.CREATING: "wait until its creation finishes",
            }.get(KeyState(row.state), "it cannot be used")
            raise InvalidKeyState(f"key {key_id} is {row.state}; {hint}")
        if row.material_state != MaterialState.ACTIVE:
            raise NoActiveKeyMaterial(f"key {key_id} has no active key material; import it again")
        with self._lock:
            loaded = self._loaded.get(key_id)
        if loaded is not None and loaded[0] == row.version:
            return loaded[1]
        with svc.db.read() as s:
            sealed = repo.load_material(s, key_id, row.material_version)
        if sealed is None:
            raise NoActiveKeyMaterial(f"key {key_id} has no active key material; import it again")
        material = svc.keyring.open(sealed, material_context(key_id, row.material_version))
        key = load_key(
            row.spec,
            row.usage,
            material,
            key_id=key_id,
            material_version=row.material_version,
            trusted_material=True,
        )
        with self._lock:
            if len(self._loaded) > MAX_ENTRIES:
                self._loaded.clear()
            self._loaded[key_id] = (row.version, key)
        return key
