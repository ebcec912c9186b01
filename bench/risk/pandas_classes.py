"""The peer for scripts/bench-risk.sh: the same equivalence classes as `veil risk`, computed with
pandas + pyarrow. Records are distinct (PatientID, quasi-identifiers) rows, missing values form
their own group (as in veil), and class sizes count records."""
import json
import sys
import time

import pandas as pd
import pyarrow.parquet as pq

QUASI = ["PatientAge", "PatientSex", "StudyDate", "Modality", "BodyPartExamined",
         "Manufacturer", "ManufacturerModelName", "StudyDescription"]


def main(path):
    t0 = time.perf_counter()
    df = pq.read_table(path, columns=["PatientID"] + QUASI).to_pandas()
    t1 = time.perf_counter()
    records = df.drop_duplicates()
    sizes = records.groupby(QUASI, dropna=False, sort=False).size()
    t2 = time.perf_counter()
    print(json.dumps({
        "rows": len(df),
        "records": int(len(records)),
        "classes": int(len(sizes)),
        "k": int(sizes.min()),
        "unique_records": int((sizes == 1).sum()),
        "read_s": round(t1 - t0, 3),
        "classes_s": round(t2 - t1, 3),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
