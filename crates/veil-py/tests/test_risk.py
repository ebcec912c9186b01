"""veil.risk measures a pandas, Arrow or list table as `veil risk TABLE.csv --json` does."""

import json

import pytest

import veil
from conftest import run_cli


def rows():
    """A small cohort: a few classes of one, most of three or more."""
    people = []
    for i in range(40):
        people.append({
            "PatientID": f"P{i:03d}",
            "PatientSex": "F" if i % 2 else "M",
            "PatientAge": f"{40 + (i % 4):03d}Y",
            "Modality": "CT" if i % 3 else "MR",
            "Diagnosis": ["a", "b", "c"][i % 3],
        })
    people.append({"PatientID": "P999", "PatientSex": "O", "PatientAge": "099Y",
                   "Modality": "PT", "Diagnosis": "a"})
    return people


def without_source(report):
    report = dict(report)
    report["risk"] = {k: v for k, v in report["risk"].items() if k != "source"}
    return report


def test_list_pandas_and_arrow_agree_with_cli(tmp_path):
    import pandas as pd
    import pyarrow as pa
    quasi = ["PatientSex", "PatientAge", "Modality"]
    from_list = veil.risk(rows(), quasi, sensitive="Diagnosis")
    frame = pd.DataFrame(rows())
    from_pandas = veil.risk(frame, quasi, sensitive="Diagnosis")
    from_arrow = veil.risk(pa.Table.from_pandas(frame), quasi, sensitive="Diagnosis")
    csv_path = tmp_path / "cohort.csv"
    frame.to_csv(csv_path, index=False)
    cli = json.loads(run_cli("risk", str(csv_path), "--quasi", ",".join(quasi),
                             "--sensitive", "Diagnosis", "--json", check_codes=(0,)).stdout)
    assert without_source(from_list) == without_source(cli)
    assert without_source(from_pandas) == without_source(cli)
    assert without_source(from_arrow) == without_source(cli)
    # The one-of-a-kind patient is a class of one.
    assert cli["risk"]["k"] == 1 and cli["risk"]["unique_records"] >= 1


def test_missing_column_is_a_usage_error():
    with pytest.raises(veil.UsageError) as e:
        veil.risk(rows(), ["NoSuchColumn"])
    assert e.value.exit_code == 2 and "NoSuchColumn" in str(e.value)
