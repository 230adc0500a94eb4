"""Reads a Delta table with delta-rs (the `deltalake` package) and prints
its rows as JSON, for tests/delta.rs: argv = uri [version [storage options
as JSON]]."""
import json
import os
import sys

from deltalake import DeltaTable
uri = sys.argv[1]
version = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
try:
    dt = DeltaTable(uri, version=version, storage_options=options)
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.stdout.flush()
    os._exit(0)
t = dt.to_pyarrow_table()
cols = t.column_names
rows = []
for r in t.to_pylist():
    rows.append([r["hostname"], int(r["time"].timestamp() * 1_000_000), r["usage_user"],
                 r.get("usage_new"), str(r["day"])])
rows.sort(key=lambda r: (r[0], r[1]))
print(json.dumps({"version": dt.version(), "columns": cols,
                  "types": [str(f.type) for f in t.schema], "rows": rows}))
sys.stdout.flush()
# delta-rs's threads may abort the interpreter's teardown ("terminate called
# without an active exception") after a successful read: skip it.
os._exit(0)
