"""Writes small.parquet, the fixture of tests/loaders.rs: nullable strings, a DATE32 column, an
int64 and a double, ZSTD-compressed with dictionary encoding, like the IDC index. Rerun with
pyarrow installed to regenerate; the expected values are in the test."""
import datetime

import pyarrow as pa
import pyarrow.parquet as pq

table = pa.table({
    "PatientID": ["p1", "p1", "p2", "p3", "p4", None],
    "PatientAge": ["030Y", "030Y", "030Y", None, "045Y", "045Y"],
    "PatientSex": ["F", "F", "F", "M", None, "M"],
    "StudyDate": pa.array([datetime.date(2019, 8, 17), datetime.date(2019, 8, 17),
                           datetime.date(2019, 8, 17), datetime.date(2000, 2, 29), None,
                           datetime.date(1969, 12, 31)], pa.date32()),
    "instanceCount": pa.array([10, 20, 10, 5, 1, 1], pa.int64()),
    "series_size_MB": pa.array([1.5, 2.0, 1.5, None, 0.25, 0.25], pa.float64()),
})
pq.write_table(table, "small.parquet", compression="zstd", row_group_size=4)
