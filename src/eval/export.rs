//! Result tables as CSV and JSON, written atomically (temp file, then rename).

use std::path::Path;

use serde::Serialize;

/// Failures writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// CSV encoding failed.
    #[error("could not encode CSV: {0}")]
    Csv(#[from] csv::Error),
    /// JSON encoding failed.
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing failed (full disk, permissions).
    #[error("could not write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("could not draw the chart: {0}")]
    Chart(String),
}

/// Rows as CSV with a header line; field names are the struct's (llama-bench's where they overlap).
pub fn csv_string<T: Serialize>(rows: &[T]) -> Result<String, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| ExportError::Io {
        path: "memory".into(),
        source: e.into_error(),
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Pretty JSON.
pub fn json_string<T: Serialize + ?Sized>(value: &T) -> Result<String, ExportError> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    crate::paths::write_atomic(path, bytes).map_err(|source| ExportError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Row {
        model_type: String,
        avg_ts: f64,
        note: Option<String>,
    }

    #[test]
    fn csv_round_trips_with_quotes_and_commas() {
        let rows = vec![
            Row {
                model_type: "q4_0".into(),
                avg_ts: 12.5,
                note: Some("a, \"quoted\" note".into()),
            },
            Row {
                model_type: "f16".into(),
                avg_ts: 3.0,
                note: None,
            },
        ];
        let text = csv_string(&rows).unwrap();
        assert!(text.starts_with("model_type,avg_ts,note\n"), "{text}");
        let back: Vec<Row> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn writes_atomically_and_reports_bad_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_file(&p, b"{}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left");
        let err = write_file(&dir.path().join("r.json/inside"), b"x").unwrap_err();
        assert!(err.to_string().contains("could not write"), "{err}");
    }
}
