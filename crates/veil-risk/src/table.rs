//! Quasi-identifier tables: one dictionary-encoded column per quasi-identifier, loaded from
//! DICOM headers (streamed up to Pixel Data), CSV or Parquet.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{Context, Result, RiskError};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use rayon::prelude::*;
use veil_profile::generalize::{normalize_raw, tag_of, Hierarchy};

use crate::fxhash::FxMap;

/// Quasi-identifiers used when none are given: what an attacker plausibly knows about an
/// imaging patient (demographics, when and where and on what device they were scanned).
pub const DEFAULT_QUASI: &[&str] = &[
    "PatientAge",
    "PatientSex",
    "StudyDate",
    "Modality",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StationName",
    "StudyDescription",
    "PatientSize",
    "PatientWeight",
];

/// The attribute that says which records belong to the same person.
pub const DEFAULT_SUBJECT: &str = "PatientID";

/// One dictionary-encoded column. Code 0 is "missing"; `values[code]` is the normalised text.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub hierarchy: Hierarchy,
    pub codes: Vec<u32>,
    pub values: Vec<String>,
}

impl Column {
    pub fn new(name: &str, hierarchy: Hierarchy) -> Self {
        Column {
            name: name.to_string(),
            hierarchy,
            codes: Vec::new(),
            values: vec![String::new()],
        }
    }

    /// Number of distinct codes (including "missing").
    pub fn cardinality(&self) -> usize {
        self.values.len()
    }
}

/// Interns values into a column's dictionary.
pub struct ColumnBuilder {
    pub column: Column,
    index: HashMap<Box<[u8]>, u32>,
}

impl ColumnBuilder {
    pub fn new(name: &str, hierarchy: Hierarchy) -> Self {
        ColumnBuilder {
            column: Column::new(name, hierarchy),
            index: HashMap::new(),
        }
    }

    pub fn push_bytes(&mut self, raw: Option<&[u8]>) {
        let code = match raw.map(trim_bytes) {
            None | Some([]) => 0,
            Some(v) => match self.index.get(v) {
                Some(&c) => c,
                None => {
                    let c = self.column.values.len() as u32;
                    self.column
                        .values
                        .push(String::from_utf8_lossy(v).into_owned());
                    self.index.insert(v.into(), c);
                    c
                }
            },
        };
        self.column.codes.push(code);
    }

    pub fn push(&mut self, raw: Option<&str>) {
        self.push_bytes(raw.map(str::as_bytes))
    }

    pub fn finish(self) -> Column {
        self.column
    }
}

fn trim_bytes(v: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| *b == 0 || b.is_ascii_whitespace();
    let start = v.iter().position(|b| !is_pad(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_pad(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Records and their quasi-identifiers.
#[derive(Debug, Clone)]
pub struct QiTable {
    /// What was read (a path), for reports.
    pub source: String,
    pub columns: Vec<Column>,
    /// Subject (person) code per row, when a subject attribute is used: class sizes then count
    /// distinct people, not files or series.
    pub subject: Option<Vec<u32>>,
    pub subject_field: Option<String>,
    pub sensitive: Option<Column>,
    /// Rows read from the input, before removing repeated (subject, quasi-identifier) rows.
    pub input_rows: usize,
    /// Inputs that could not be read (path or row, reason); never silently dropped.
    pub rejected: Vec<(String, String)>,
}

impl QiTable {
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or_else(
            || self.subject.as_ref().map_or(0, |s| s.len()),
            |c| c.codes.len(),
        )
    }

    pub fn quasi_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Keeps one row per distinct (subject, quasi-identifiers, sensitive value): a person's
    /// many files or series with the same values are one record. Generalisation only merges
    /// values, so rows identical here stay identical at every level of the search.
    pub fn dedupe(&mut self) {
        let Some(subject) = &self.subject else { return };
        let n = subject.len();
        let mut seen: FxMap<Vec<u32>, ()> = FxMap::default();
        let mut keep = Vec::with_capacity(n);
        let width = self.columns.len() + 2;
        for (i, &subj) in subject.iter().enumerate() {
            let mut key = Vec::with_capacity(width);
            key.push(subj);
            key.extend(self.columns.iter().map(|c| c.codes[i]));
            if let Some(s) = &self.sensitive {
                key.push(s.codes[i]);
            }
            if seen.insert(key, ()).is_none() {
                keep.push(i);
            }
        }
        if keep.len() == n {
            return;
        }
        let pick = |codes: &Vec<u32>| keep.iter().map(|&i| codes[i]).collect::<Vec<u32>>();
        for c in &mut self.columns {
            c.codes = pick(&c.codes);
        }
        if let Some(s) = &mut self.sensitive {
            s.codes = pick(&s.codes);
        }
        self.subject = Some(pick(subject));
    }
}

/// What to read and which fields to use.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Quasi-identifier names; empty = the defaults that exist in the input.
    pub quasi: Vec<String>,
    pub sensitive: Option<String>,
    /// Subject attribute; `None` = PatientID when present; `Some("")` = every row is a record.
    pub subject: Option<String>,
}

/// Loads a directory of DICOM files, a single DICOM file, a CSV or a Parquet table.
pub fn load(input: &Path, opts: &LoadOptions) -> Result<QiTable> {
    if input.is_dir() {
        return load_dicom(input, opts);
    }
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => load_csv(input, opts),
        "parquet" | "pq" => load_parquet(input, opts),
        _ => load_dicom(input, opts),
    }
}

/// Hierarchy for a field named in `--quasi`, which may carry a kind: `Name:age`.
fn split_kind(spec: &str) -> Result<(String, Hierarchy)> {
    match spec.split_once(':') {
        Some((name, kind)) => {
            let h = Hierarchy::from_kind(name, kind).ok_or_else(|| {
                crate::usage(format!(
                    "--quasi {spec}: unknown kind {kind:?}; use age, date, number or category"
                ))
            })?;
            Ok((name.to_string(), h))
        }
        None => Ok((spec.to_string(), Hierarchy::for_field(spec))),
    }
}

/// Resolves requested names against the names an input has (exact, then case-insensitive).
/// Returns (requested name, index in `available`).
fn resolve_columns(
    requested: &[String],
    available: &[String],
    what: &str,
) -> Result<Vec<(String, Hierarchy, usize)>> {
    let find = |name: &str| {
        available
            .iter()
            .position(|a| a == name)
            .or_else(|| available.iter().position(|a| a.eq_ignore_ascii_case(name)))
    };
    let mut out = Vec::new();
    if requested.is_empty() {
        for name in DEFAULT_QUASI {
            if let Some(i) = find(name) {
                out.push((available[i].clone(), Hierarchy::for_field(name), i));
            }
        }
        if out.is_empty() {
            return Err(crate::usage(format!(
                "{what} has none of the default quasi-identifiers ({}); name them with --quasi",
                DEFAULT_QUASI.join(",")
            )));
        }
        return Ok(out);
    }
    for spec in requested {
        let (name, h) = split_kind(spec)?;
        let i = find(&name).ok_or_else(|| {
            crate::usage(format!(
                "--quasi {name}: {what} has no such column; it has {}",
                available.join(", ")
            ))
        })?;
        out.push((available[i].clone(), h, i));
    }
    Ok(out)
}

fn find_optional(available: &[String], name: &str) -> Option<usize> {
    available
        .iter()
        .position(|a| a == name)
        .or_else(|| available.iter().position(|a| a.eq_ignore_ascii_case(name)))
}

fn subject_index(available: &[String], opts: &LoadOptions, what: &str) -> Result<Option<usize>> {
    match opts.subject.as_deref() {
        Some("") => Ok(None),
        Some(name) => find_optional(available, name)
            .map(Some)
            .ok_or_else(|| crate::usage(format!("--subject {name}: {what} has no such column"))),
        None => Ok(find_optional(available, DEFAULT_SUBJECT)),
    }
}

fn sensitive_index(available: &[String], opts: &LoadOptions, what: &str) -> Result<Option<usize>> {
    match &opts.sensitive {
        None => Ok(None),
        Some(name) => find_optional(available, name)
            .map(Some)
            .ok_or_else(|| crate::usage(format!("--sensitive {name}: {what} has no such column"))),
    }
}

/// CSV with a header row.
pub fn load_csv(path: &Path, opts: &LoadOptions) -> Result<QiTable> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("{}: cannot open CSV", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the CSV header row", path.display()))?
        .iter()
        .map(|s| s.to_string())
        .collect();
    let what = format!("{}", path.display());
    let cols = resolve_columns(&opts.quasi, &header, &what)?;
    let subj = subject_index(&header, opts, &what)?;
    let sens = sensitive_index(&header, opts, &what)?;
    let mut builders: Vec<ColumnBuilder> = cols
        .iter()
        .map(|(n, h, _)| ColumnBuilder::new(n, h.clone()))
        .collect();
    let mut subj_b = subj.map(|_| ColumnBuilder::new("subject", Hierarchy::for_field("")));
    let mut sens_b = sens.map(|i| ColumnBuilder::new(&header[i], Hierarchy::for_field("")));
    let mut rec = csv::ByteRecord::new();
    let mut row = 0usize;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(RiskError::Failed(format!(
                    "{}: CSV row {}: {e}; fix the file and rerun",
                    path.display(),
                    row + 2
                )))
            }
        }
        for (b, (_, _, i)) in builders.iter_mut().zip(&cols) {
            b.push_bytes(rec.get(*i));
        }
        if let (Some(b), Some(i)) = (&mut subj_b, subj) {
            b.push_bytes(rec.get(i));
        }
        if let (Some(b), Some(i)) = (&mut sens_b, sens) {
            b.push_bytes(rec.get(i));
        }
        row += 1;
    }
    Ok(QiTable {
        source: what,
        columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
        subject: subj_b.map(|b| b.finish().codes),
        subject_field: subj.map(|i| header[i].clone()),
        sensitive: sens_b.map(ColumnBuilder::finish),
        input_rows: row,
        rejected: Vec::new(),
    })
}

/// Parquet through the `parquet` crate's column readers (no Arrow): each needed column is
/// decoded straight into a dictionary-encoded column, columns in parallel.
pub fn load_parquet(path: &Path, opts: &LoadOptions) -> Result<QiTable> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let what = format!("{}", path.display());
    let reader = SerializedFileReader::new(
        File::open(path).with_context(|| format!("{what}: cannot open"))?,
    )
    .with_context(|| format!("{what}: not a readable Parquet file"))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
    let input_rows = reader.metadata().file_metadata().num_rows() as usize;
    let cols = resolve_columns(&opts.quasi, &names, &what)?;
    let subj = subject_index(&names, opts, &what)?;
    let sens = sensitive_index(&names, opts, &what)?;

    let mut jobs: Vec<(String, Hierarchy, usize)> = cols.clone();
    if let Some(i) = subj {
        jobs.push(("subject".into(), Hierarchy::for_field(""), i));
    }
    if let Some(i) = sens {
        jobs.push((names[i].clone(), Hierarchy::for_field(""), i));
    }
    let mut built: Vec<Column> = jobs
        .par_iter()
        .map(|(name, h, i)| read_parquet_column(path, *i, name, h.clone()))
        .collect::<Result<_>>()?;
    let sensitive = if sens.is_some() { built.pop() } else { None };
    let subject = if subj.is_some() {
        built.pop().map(|c| c.codes)
    } else {
        None
    };
    Ok(QiTable {
        source: what,
        columns: built,
        subject,
        subject_field: subj.map(|i| names[i].clone()),
        sensitive,
        input_rows,
        rejected: Vec::new(),
    })
}

fn read_parquet_column(path: &Path, col: usize, name: &str, h: Hierarchy) -> Result<Column> {
    use parquet::basic::{ConvertedType, LogicalType};
    use parquet::column::reader::ColumnReader;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let what = path.display();
    let reader = SerializedFileReader::new(
        File::open(path).with_context(|| format!("{}: cannot open", path.display()))?,
    )
    .with_context(|| format!("{what}: not a readable Parquet file"))?;
    let descr = reader.metadata().file_metadata().schema_descr().column(col);
    if descr.max_rep_level() > 0 {
        return Err(crate::usage(format!(
            "{what}: column {name} is a list; use a flat column"
        )));
    }
    let is_date = matches!(descr.logical_type_ref(), Some(LogicalType::Date))
        || descr.converted_type() == ConvertedType::DATE;
    let mut b = ColumnBuilder::new(name, h);
    const BATCH: usize = 64 * 1024;
    let mut defs: Vec<i16> = Vec::with_capacity(BATCH);
    let max_def = descr.max_def_level();
    for rg in 0..reader.num_row_groups() {
        let group = reader.get_row_group(rg)?;
        let mut cr = group.get_column_reader(col)?;
        loop {
            defs.clear();
            let def_arg = if max_def > 0 { Some(&mut defs) } else { None };
            // Each arm reads one batch and pushes values in row order, nulls where the
            // definition level says the value is absent.
            let records = match &mut cr {
                ColumnReader::ByteArrayColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        b.push_bytes(Some(v.data()))
                    });
                    recs
                }
                ColumnReader::Int32ColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        let s = if is_date { days_to_iso(*v as i64) } else { v.to_string() };
                        b.push(Some(&s))
                    });
                    recs
                }
                ColumnReader::Int64ColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        b.push(Some(&v.to_string()))
                    });
                    recs
                }
                ColumnReader::DoubleColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        b.push(Some(&v.to_string()))
                    });
                    recs
                }
                ColumnReader::FloatColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        b.push(Some(&v.to_string()))
                    });
                    recs
                }
                ColumnReader::BoolColumnReader(r) => {
                    let mut vals = Vec::with_capacity(BATCH);
                    let (recs, _, _) = r.read_records(BATCH, def_arg, None, &mut vals)?;
                    push_with_nulls(&mut b, recs, max_def, &defs, &vals, |b, v| {
                        b.push(Some(if *v { "true" } else { "false" }))
                    });
                    recs
                }
                _ => return Err(crate::usage(format!(
                    "{what}: column {name} has a physical type veil risk does not read (INT96 or fixed-length binary)"
                ))),
            };
            if records == 0 {
                break;
            }
        }
    }
    Ok(b.finish())
}

fn push_with_nulls<T>(
    b: &mut ColumnBuilder,
    records: usize,
    max_def: i16,
    defs: &[i16],
    vals: &[T],
    mut push: impl FnMut(&mut ColumnBuilder, &T),
) {
    if max_def == 0 {
        for v in vals {
            push(b, v);
        }
        return;
    }
    let mut it = vals.iter();
    for d in &defs[..records] {
        if *d == max_def {
            match it.next() {
                Some(v) => push(b, v),
                None => b.push(None),
            }
        } else {
            b.push(None);
        }
    }
}

/// Days since 1970-01-01 to "YYYY-MM-DD" (civil-from-days, proleptic Gregorian).
fn days_to_iso(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// A directory (recursively) or one file of DICOM: headers only, read up to Pixel Data, in
/// parallel. Files that are not readable DICOM are listed in `rejected`, never skipped silently.
pub fn load_dicom(input: &Path, opts: &LoadOptions) -> Result<QiTable> {
    let mut files: Vec<PathBuf> = Vec::new();
    if input.is_dir() {
        // Hidden entries are tool metadata (a `veil deid` output's `.veil/` run report and
        // journal), not data.
        let walker = walkdir::WalkDir::new(input)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0 || !e.file_name().to_str().is_some_and(|n| n.starts_with('.'))
            });
        for entry in walker {
            let entry = entry.with_context(|| format!("{}: cannot list", input.display()))?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    } else if input.is_file() {
        files.push(input.to_path_buf());
    } else {
        return Err(crate::usage(format!(
            "{}: no such file or directory",
            input.display()
        )));
    }
    let requested: Vec<(String, Hierarchy)> = if opts.quasi.is_empty() {
        DEFAULT_QUASI
            .iter()
            .map(|n| (n.to_string(), Hierarchy::for_field(n)))
            .collect()
    } else {
        opts.quasi
            .iter()
            .map(|q| split_kind(q))
            .collect::<Result<_>>()?
    };
    let mut tags_wanted = Vec::new();
    for (name, _) in &requested {
        let tag = tag_of(name).ok_or_else(|| {
            crate::usage(format!(
                "--quasi {name}: not a DICOM keyword (e.g. PatientAge, StudyDate)"
            ))
        })?;
        tags_wanted.push(tag);
    }
    let subject_tag = match opts.subject.as_deref() {
        Some("") => None,
        Some(name) => Some(
            tag_of(name)
                .ok_or_else(|| crate::usage(format!("--subject {name}: not a DICOM keyword")))?,
        ),
        None => Some(tags::PATIENT_ID),
    };
    let sensitive_tag = match &opts.sensitive {
        None => None,
        Some(name) => Some(
            tag_of(name)
                .ok_or_else(|| crate::usage(format!("--sensitive {name}: not a DICOM keyword")))?,
        ),
    };

    type Row = (Vec<Option<String>>, Option<String>, Option<String>);
    let rows: Vec<std::result::Result<Row, String>> = files
        .par_iter()
        .map(|f| {
            let obj = OpenFileOptions::new()
                .read_until(tags::PIXEL_DATA)
                .open_file(f)
                .map_err(|e| format!("not readable as DICOM: {e}"))?;
            let get = |t| {
                obj.element_opt(t)
                    .ok()
                    .flatten()
                    .and_then(|e| e.to_str().ok().map(|s| normalize_raw(&s)))
            };
            let qi = tags_wanted
                .iter()
                .map(|t| match get(*t).filter(|v| !v.is_empty()) {
                    // "Age or birth year": without Patient Age, the age at the study from the
                    // birth date (as the de-identifier derives it when characteristics are kept).
                    None if *t == tags::PATIENT_AGE => derived_age(&get),
                    v => v,
                })
                .collect();
            Ok((qi, subject_tag.and_then(get), sensitive_tag.and_then(get)))
        })
        .collect();

    let mut builders: Vec<ColumnBuilder> = requested
        .iter()
        .map(|(n, h)| ColumnBuilder::new(n, h.clone()))
        .collect();
    let mut subj_b = subject_tag.map(|_| ColumnBuilder::new("subject", Hierarchy::for_field("")));
    let mut sens_b = opts
        .sensitive
        .as_ref()
        .map(|n| ColumnBuilder::new(n, Hierarchy::for_field("")));
    let mut rejected = Vec::new();
    for (f, row) in files.iter().zip(rows) {
        match row {
            Ok((qi, subj, sens)) => {
                for (b, v) in builders.iter_mut().zip(&qi) {
                    b.push(v.as_deref());
                }
                if let Some(b) = &mut subj_b {
                    b.push(subj.as_deref());
                }
                if let Some(b) = &mut sens_b {
                    b.push(sens.as_deref());
                }
            }
            Err(reason) => rejected.push((f.display().to_string(), reason)),
        }
    }
    let read = files.len() - rejected.len();
    if read == 0 {
        return Err(crate::usage(format!(
            "{}: no readable DICOM file ({} rejected)",
            input.display(),
            rejected.len()
        )));
    }
    Ok(QiTable {
        source: input.display().to_string(),
        columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
        subject: subj_b.map(|b| b.finish().codes),
        subject_field: subject_tag.map(|_| {
            opts.subject
                .clone()
                .unwrap_or_else(|| DEFAULT_SUBJECT.to_string())
        }),
        sensitive: sens_b.map(ColumnBuilder::finish),
        input_rows: read,
        rejected,
    })
}

/// Age in whole years at the study (or series, acquisition, content) date from Patient Birth
/// Date, as a DICOM Age String.
fn derived_age(get: &dyn Fn(dicom_core::Tag) -> Option<String>) -> Option<String> {
    use veil_profile::generalize::parse_date;
    let (by, bm, bd) = parse_date(&get(tags::PATIENT_BIRTH_DATE)?)?;
    let on = [
        tags::STUDY_DATE,
        tags::SERIES_DATE,
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
    ]
    .iter()
    .find_map(|t| get(*t).and_then(|v| parse_date(&v)))?;
    let (y, m, d) = on;
    let mut years = y as i64 - by as i64;
    if (m, d) < (bm, bd) {
        years -= 1;
    }
    (0..=200).contains(&years).then(|| format!("{years:03}Y"))
}

impl From<parquet::errors::ParquetError> for RiskError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        RiskError::Failed(format!(
            "Parquet: {e}; check that the file is a complete Parquet table"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_derived_from_birth_date() {
        let vals = |t: dicom_core::Tag| match t {
            t if t == tags::PATIENT_BIRTH_DATE => Some("19600615".to_string()),
            t if t == tags::STUDY_DATE => Some("20200614".to_string()),
            _ => None,
        };
        assert_eq!(derived_age(&vals).as_deref(), Some("059Y"));
        let none = |_t: dicom_core::Tag| None;
        assert_eq!(derived_age(&none), None);
    }

    #[test]
    fn days_to_iso_matches_calendar() {
        assert_eq!(days_to_iso(0), "1970-01-01");
        assert_eq!(days_to_iso(18_000), "2019-04-14");
        assert_eq!(days_to_iso(-1), "1969-12-31");
        assert_eq!(days_to_iso(11_016), "2000-02-29");
    }

    #[test]
    fn builder_interns_and_trims() {
        let mut b = ColumnBuilder::new("x", Hierarchy::for_field("x"));
        b.push(Some("CT "));
        b.push(Some("CT"));
        b.push(Some("  "));
        b.push(None);
        b.push(Some("MR\0"));
        let c = b.finish();
        assert_eq!(c.codes, vec![1, 1, 0, 0, 2]);
        assert_eq!(c.values, vec!["", "CT", "MR"]);
    }
}
