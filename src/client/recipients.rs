//! A CSV file of recipients → the `recipients` of a send-bulk request, validated as far as
//! it can be without the server.
//!
//! The format:
//! - a header row is required; names are trimmed; `phone` (any case) is the recipient's number
//!   and is required;
//! - `button_0`, `button_1`, … (any case) become `button_variables`; every other named column
//!   becomes a key of `variables`, spelled as in the header (template parameter names, or `1`,
//!   `2`, … for positional templates);
//! - cell values are trimmed of surrounding whitespace. An **empty cell leaves its key out** of
//!   that recipient, so the server reports the parameter as missing for that line (rather than
//!   sending an empty parameter, which Meta refuses anyway);
//! - a column with an empty header name is ignored as long as all its cells are empty (the
//!   trailing `,` spreadsheets leave), and an error otherwise;
//! - the delimiter is `,`, or `;` (or a tab) when the header line has that and no `,`
//!   (spreadsheets in Spanish-speaking locales save CSV with `;`);
//! - UTF-8 only; a leading byte-order mark is ignored; blank lines are skipped; quoted fields
//!   may span lines (line numbers are those of the row's first line).
//!
//! Phones are normalised to E.164 with [`E164::parse`], the server's own rule, so a typo is
//! reported with its line before anything is sent. Templates are not checked here: the server
//! knows them, and its per-recipient errors are mapped back to lines through
//! [`RecipientsCsv::line_of`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::domain::phone::E164;

/// Most data rows one file may hold (the daemon's default `max_recipients`).
pub const MAX_ROWS: usize = 100_000;

/// Most per-row problems quoted in one error message.
pub const MAX_QUOTED_PROBLEMS: usize = 5;

/// The UTF-8 byte-order mark some editors write at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The prefix of button-variable columns (`button_0`).
const BUTTON_PREFIX: &str = "button_";

/// One recipient as the send-bulk request wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// E.164, normalised locally.
    pub phone: String,
    /// Template parameters by name (or position), from the non-button columns.
    pub variables: BTreeMap<String, String>,
    /// `button_N` → value, from the `button_N` columns; left out of the JSON when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub button_variables: BTreeMap<String, String>,
}

/// A parsed file: recipients in file order and the line each one came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientsCsv {
    pub recipients: Vec<Recipient>,
    /// `lines[i]` is the (1-based) line of `recipients[i]`.
    pub lines: Vec<u64>,
}

impl RecipientsCsv {
    /// The line of the recipient at `index` in the request (what the server's `errors[].index`
    /// names).
    pub fn line_of(&self, index: usize) -> Option<u64> {
        self.lines.get(index).copied()
    }
}

/// A row whose phone cannot be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    pub reason: String,
}

/// Why a file was refused. `Display` is one line, naming the line and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("the file is empty (expected a header row with a `phone` column, then one row per recipient)")]
    Empty,
    #[error("line {line}: the header row has no `phone` column (columns: {found})")]
    MissingPhoneColumn { line: u64, found: String },
    #[error("line {line}: column {second} repeats the name `{name}` of column {first}")]
    DuplicateColumn {
        line: u64,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("line {line}: column {column} has a value but no name in the header row")]
    UnnamedColumnValue { line: u64, column: usize },
    #[error("line {line}: {found} fields, but the header row has {expected}")]
    WrongFieldCount {
        line: u64,
        expected: u64,
        found: u64,
    },
    #[error("line {line}: not valid UTF-8 (save the file as UTF-8)")]
    InvalidUtf8 { line: u64 },
    #[error("no recipients: the file has a header row but no data rows")]
    NoRows,
    #[error("line {line}: more than {max} recipients in one file; split it into several sends")]
    TooManyRows { line: u64, max: usize },
    #[error("{}", describe_problems(.problems, *.count))]
    InvalidPhones {
        /// The first [`MAX_QUOTED_PROBLEMS`] problems.
        problems: Vec<RowProblem>,
        /// How many rows have one.
        count: usize,
    },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("cannot read the file: {0}")]
    Io(String),
}

fn describe_problems(problems: &[RowProblem], count: usize) -> String {
    let mut out = format!(
        "{count} row{} with an invalid phone, nothing was sent: ",
        if count == 1 { "" } else { "s" }
    );
    let quoted: Vec<String> = problems
        .iter()
        .map(|p| format!("line {}: {}", p.line, p.reason))
        .collect();
    out.push_str(&quoted.join("; "));
    if count > problems.len() {
        out.push_str(&format!("; and {} more", count - problems.len()));
    }
    out
}

/// What a header column means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Phone,
    Variable(String),
    Button(String),
    /// Empty header name: must stay empty.
    Unnamed,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Phone => f.write_str("phone"),
            Column::Variable(name) | Column::Button(name) => f.write_str(name),
            Column::Unnamed => f.write_str(""),
        }
    }
}

fn classify(header: &str) -> Column {
    let name = header.trim();
    if name.is_empty() {
        return Column::Unnamed;
    }
    if name.eq_ignore_ascii_case("phone") {
        return Column::Phone;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(n) = lower.strip_prefix(BUTTON_PREFIX) {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return Column::Button(lower);
        }
    }
    Column::Variable(name.to_owned())
}

/// Picks the delimiter from the header line: `;` or a tab when it has that and no `,`.
fn sniff_delimiter(data: &[u8]) -> u8 {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.contains(&b',') {
        b','
    } else if first_line.contains(&b';') {
        b';'
    } else if first_line.contains(&b'\t') {
        b'\t'
    } else {
        b','
    }
}

/// Reads a file with [`parse`].
pub fn read_file(path: &std::path::Path) -> Result<RecipientsCsv, CsvError> {
    let data = std::fs::read(path).map_err(|e| CsvError::Io(e.to_string()))?;
    parse(&data)
}

/// Parses the bytes of a CSV file (see the module docs for the format).
pub fn parse(data: &[u8]) -> Result<RecipientsCsv, CsvError> {
    parse_capped(data, MAX_ROWS)
}

/// [`parse`] with a row cap of `max_rows`.
fn parse_capped(data: &[u8], max_rows: usize) -> Result<RecipientsCsv, CsvError> {
    let data = data.strip_prefix(UTF8_BOM).unwrap_or(data);
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(CsvError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .delimiter(sniff_delimiter(data))
        .from_reader(data);
    let mut records = reader.records();

    let mut lines_index = LineIndex::new(data);
    let header = match records.next() {
        None => return Err(CsvError::Empty),
        Some(record) => record.map_err(|e| from_csv_error(e, data))?,
    };
    let header_line = lines_index.line_of(header.position());
    let columns = read_header(&header, header_line)?;
    let phone_at = columns
        .iter()
        .position(|c| *c == Column::Phone)
        .ok_or_else(|| CsvError::MissingPhoneColumn {
            line: header_line,
            found: header
                .iter()
                .map(|h| format!("`{}`", h.trim()))
                .collect::<Vec<_>>()
                .join(", "),
        })?;

    let mut recipients = Vec::new();
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut problem_count = 0;
    for record in records {
        let record = record.map_err(|e| from_csv_error(e, data))?;
        let line = lines_index.line_of(record.position());
        if lines.len() == max_rows {
            return Err(CsvError::TooManyRows {
                line,
                max: max_rows,
            });
        }
        let raw_phone = record.get(phone_at).unwrap_or_default().trim();
        let phone = match E164::parse(raw_phone) {
            Ok(phone) => Some(phone.into_string()),
            Err(err) => {
                problem_count += 1;
                if problems.len() < MAX_QUOTED_PROBLEMS {
                    let reason = if raw_phone.is_empty() {
                        "phone is empty".to_owned()
                    } else {
                        format!("phone {:?} {}", quote(raw_phone), err.reason())
                    };
                    problems.push(RowProblem { line, reason });
                }
                None
            }
        };
        let mut variables = BTreeMap::new();
        let mut button_variables = BTreeMap::new();
        for (i, (column, value)) in columns.iter().zip(record.iter()).enumerate() {
            let value = value.trim();
            match column {
                Column::Phone => {}
                _ if value.is_empty() => {}
                Column::Variable(name) => {
                    variables.insert(name.clone(), value.to_owned());
                }
                Column::Button(name) => {
                    button_variables.insert(name.clone(), value.to_owned());
                }
                Column::Unnamed => {
                    return Err(CsvError::UnnamedColumnValue {
                        line,
                        column: i + 1,
                    })
                }
            }
        }
        if let Some(phone) = phone {
            recipients.push(Recipient {
                phone,
                variables,
                button_variables,
            });
        }
        lines.push(line);
    }
    if problem_count > 0 {
        return Err(CsvError::InvalidPhones {
            problems,
            count: problem_count,
        });
    }
    if recipients.is_empty() {
        return Err(CsvError::NoRows);
    }
    Ok(RecipientsCsv { recipients, lines })
}

/// Classifies the header row; refuses duplicate names (after trimming and case folding of
/// `phone` and `button_N`).
fn read_header(header: &csv::StringRecord, line: u64) -> Result<Vec<Column>, CsvError> {
    let columns: Vec<Column> = header.iter().map(classify).collect();
    for (second, column) in columns.iter().enumerate() {
        if *column == Column::Unnamed {
            continue;
        }
        if let Some(first) = columns[..second].iter().position(|c| c == column) {
            return Err(CsvError::DuplicateColumn {
                line,
                name: column.to_string(),
                first: first + 1,
                second: second + 1,
            });
        }
    }
    Ok(columns)
}

/// 1-based line numbers of records, from their byte offsets. (The csv crate's own line count
/// is off after blank lines and with CRLF endings, so it is not used.) Line breaks are `\n`,
/// `\r\n` and a lone `\r`.
struct LineIndex<'a> {
    data: &'a [u8],
    /// Bytes before this offset are counted in `line`.
    offset: usize,
    line: u64,
}

impl<'a> LineIndex<'a> {
    fn new(data: &'a [u8]) -> Self {
        LineIndex {
            data,
            offset: 0,
            line: 1,
        }
    }

    /// The line a record starts on, given where the reader was when it began the record
    /// (possibly before blank lines it skipped). Positions must not go backwards.
    fn line_of(&mut self, position: Option<&csv::Position>) -> u64 {
        let Some(position) = position else {
            return self.line;
        };
        let mut start = usize::try_from(position.byte())
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        let from = self.offset.min(start);
        for i in from..start {
            let brk = match self.data[i] {
                b'\n' => true,
                b'\r' => self.data.get(i + 1) != Some(&b'\n'),
                _ => false,
            };
            if brk {
                self.line += 1;
            }
        }
        self.offset = start;
        self.line
    }
}

fn from_csv_error(err: csv::Error, data: &[u8]) -> CsvError {
    let line = LineIndex::new(data).line_of(err.position());
    match err.into_kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => CsvError::WrongFieldCount {
            line,
            expected: expected_len,
            found: len,
        },
        csv::ErrorKind::Utf8 { .. } => CsvError::InvalidUtf8 { line },
        csv::ErrorKind::Io(e) => CsvError::Io(e.to_string()),
        other => CsvError::Malformed {
            line,
            message: format!("{other:?}"),
        },
    }
}

/// At most 32 characters of a cell quoted in an error.
fn quote(value: &str) -> String {
    let mut out: String = value.chars().take(32).collect();
    if value.chars().nth(32).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RecipientsCsv {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(data: &[u8]) -> CsvError {
        parse(data).expect_err("should be refused")
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn columns_become_phone_variables_and_buttons() {
        let parsed = ok("phone,customer_name,button_0,1\n\
             +54 9 11 3000-0001,Ana,A-1,x\n\
             005491130000002, Juan ,B-2,y\n");
        assert_eq!(
            parsed.recipients,
            vec![
                Recipient {
                    phone: "+5491130000001".into(),
                    variables: map(&[("customer_name", "Ana"), ("1", "x")]),
                    button_variables: map(&[("button_0", "A-1")]),
                },
                Recipient {
                    phone: "+5491130000002".into(),
                    variables: map(&[("customer_name", "Juan"), ("1", "y")]),
                    button_variables: map(&[("button_0", "B-2")]),
                },
            ]
        );
        assert_eq!(parsed.lines, vec![2, 3]);
    }

    #[test]
    fn header_names_are_trimmed_and_phone_and_buttons_match_any_case() {
        let parsed = ok(" Phone , Name ,BUTTON_1\n+5491130000001,Ana,x\n");
        let r = &parsed.recipients[0];
        assert_eq!(r.variables, map(&[("Name", "Ana")]));
        assert_eq!(r.button_variables, map(&[("button_1", "x")]));
        // Not a button column: a variable (the server will call it unknown).
        let parsed = ok("phone,button_x\n+5491130000001,v\n");
        assert_eq!(parsed.recipients[0].variables, map(&[("button_x", "v")]));
    }

    #[test]
    fn empty_cells_leave_their_key_out() {
        let parsed = ok("phone,name,button_0\n+5491130000001,,  \n");
        assert!(parsed.recipients[0].variables.is_empty());
        assert!(parsed.recipients[0].button_variables.is_empty());
        let json = serde_json::to_value(&parsed.recipients[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"phone": "+5491130000001", "variables": {}})
        );
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let mut data = UTF8_BOM.to_vec();
        data.extend_from_slice(b"phone,name\r\n+5491130000001,Ana\r\n");
        let parsed = parse(&data).unwrap();
        assert_eq!(parsed.recipients[0].variables, map(&[("name", "Ana")]));
        assert_eq!(err(UTF8_BOM), CsvError::Empty);
    }

    #[test]
    fn semicolons_and_tabs_are_accepted_when_the_header_has_no_comma() {
        let parsed = ok("phone;name\n+5491130000001;Pérez, Ana\n");
        assert_eq!(
            parsed.recipients[0].variables,
            map(&[("name", "Pérez, Ana")])
        );
        let parsed = ok("phone\tname\n+5491130000001\tAna\n");
        assert_eq!(parsed.recipients[0].variables, map(&[("name", "Ana")]));
    }

    #[test]
    fn blank_lines_and_multi_line_cells_keep_line_numbers_true() {
        let parsed = ok("phone,note\n\n+5491130000001,\"two\nlines\"\n\n+5491130000002,x\n");
        assert_eq!(parsed.lines, vec![3, 6]);
        assert_eq!(parsed.line_of(1), Some(6));
        assert_eq!(parsed.line_of(2), None);
        assert_eq!(
            parsed.recipients[0].variables,
            map(&[("note", "two\nlines")])
        );
    }

    #[test]
    fn line_numbers_hold_with_any_line_ending() {
        for (data, lines) in [
            (
                &b"phone\r\n+5491130000001\r\n\r\n+5491130000002\r\n+5491130000003\r\n"[..],
                vec![2, 4, 5],
            ),
            (b"phone\n+5491130000001\n\n\n+5491130000002", vec![2, 5]),
            (b"phone\r+5491130000001\r\r+5491130000002\r", vec![2, 4]),
            (b"\n\nphone\n+5491130000001\n", vec![4]),
        ] {
            assert_eq!(
                parse(data).unwrap().lines,
                lines,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert_eq!(
            err(b"phone,name\r\n\r\n+5491130000001,a\r\n\r\n\r\n+5491130000002\r\n"),
            CsvError::WrongFieldCount {
                line: 6,
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            err(b"\nphone,name\n+5491130000001,a\n\n+54911300000\xff2,b\n"),
            CsvError::InvalidUtf8 { line: 5 }
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_eq!(err(b""), CsvError::Empty);
        assert_eq!(err(b" \n\r\n"), CsvError::Empty);
        assert!(CsvError::Empty.to_string().contains("empty"));
    }

    #[test]
    fn a_header_without_rows_is_refused() {
        assert_eq!(err(b"phone,name\n"), CsvError::NoRows);
        assert_eq!(err(b"phone,name\n\n\n"), CsvError::NoRows);
    }

    #[test]
    fn a_missing_phone_column_is_named() {
        let e = err(b"telefono,name\n+5491130000001,Ana\n");
        assert_eq!(
            e.to_string(),
            "line 1: the header row has no `phone` column (columns: `telefono`, `name`)"
        );
    }

    #[test]
    fn duplicate_columns_are_refused() {
        let e = err(b"phone,name,name\n+5491130000001,a,b\n");
        assert_eq!(
            e.to_string(),
            "line 1: column 3 repeats the name `name` of column 2"
        );
        assert!(matches!(
            err(b"Phone,phone\n1,2\n"),
            CsvError::DuplicateColumn {
                first: 1,
                second: 2,
                ..
            }
        ));
        assert!(matches!(
            err(b"phone,button_0,BUTTON_0\n1,2,3\n"),
            CsvError::DuplicateColumn { .. }
        ));
    }

    #[test]
    fn unnamed_columns_must_stay_empty() {
        let parsed = ok("phone,name,\n+5491130000001,Ana,\n");
        assert_eq!(parsed.recipients[0].variables, map(&[("name", "Ana")]));
        assert_eq!(
            err(b"phone,name,\n+5491130000001,Ana,\n+5491130000002,Juan,oops\n").to_string(),
            "line 3: column 3 has a value but no name in the header row"
        );
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_named() {
        let e = err(b"phone,name\n+5491130000001,Ana\n+5491130000002,Juan,extra\n");
        assert_eq!(
            e,
            CsvError::WrongFieldCount {
                line: 3,
                expected: 2,
                found: 3
            }
        );
        assert_eq!(e.to_string(), "line 3: 3 fields, but the header row has 2");
        let e = err(b"phone,name\n+5491130000001\n");
        assert_eq!(e.to_string(), "line 2: 1 fields, but the header row has 2");
    }

    #[test]
    fn invalid_utf8_is_named_with_its_line() {
        let e = err(b"phone,name\n+5491130000001,Ana\n+5491130000002,Jos\xE9\n");
        assert_eq!(e, CsvError::InvalidUtf8 { line: 3 });
        assert!(e.to_string().contains("UTF-8"));
        assert_eq!(
            err(b"phone,n\xE9\n1,2\n"),
            CsvError::InvalidUtf8 { line: 1 }
        );
    }

    #[test]
    fn invalid_and_empty_phones_are_listed_with_their_lines() {
        let e = err(b"phone,name\n+5491130000001,Ana\n,Juan\n+12,Eva\nabc,Leo\n");
        let CsvError::InvalidPhones { problems, count } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*count, 3);
        assert_eq!(
            problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let text = e.to_string();
        assert!(text.starts_with("3 rows with an invalid phone, nothing was sent: line 3: phone is empty; line 4: phone \"+12\" "), "{text}");
        assert!(
            text.contains("line 5: phone \"abc\" contains characters that are not digits"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn only_the_first_phone_problems_are_quoted() {
        let mut text = String::from("phone\n");
        for _ in 0..8 {
            text.push_str("nope\n");
        }
        let e = err(text.as_bytes());
        let message = e.to_string();
        assert!(message.starts_with("8 rows"), "{message}");
        assert!(
            message.ends_with(
                "line 6: phone \"nope\" contains characters that are not digits; and 3 more"
            ),
            "{message}"
        );
    }

    #[test]
    fn more_than_the_cap_is_refused_with_the_first_line_over_it() {
        let text = "phone\n+5491130000001\n+5491130000002\n\n+5491130000003\n";
        assert_eq!(
            parse_capped(text.as_bytes(), 2).unwrap_err(),
            CsvError::TooManyRows { line: 5, max: 2 }
        );
        assert_eq!(
            parse_capped(text.as_bytes(), 3).unwrap().recipients.len(),
            3
        );
        assert_eq!(
            CsvError::TooManyRows {
                line: 100_002,
                max: MAX_ROWS
            }
            .to_string(),
            "line 100002: more than 100000 recipients in one file; split it into several sends"
        );
    }
}
