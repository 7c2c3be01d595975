//! The caller's single-number checks, as every front door shows them: pages, a file of them
//! all, and clearing. A caller only ever reaches their own entries.

use wacheck_core::ResultFormat;
use wacheck_core::table::TableWriter;
use wacheck_store::history::{self, Entry, Filter};

use crate::{Caller, Code, Error, Services};

/// Most entries one export holds.
pub const EXPORT_MAX: usize = 1_000_000;

/// Entries read from the database at a time while exporting.
const EXPORT_BATCH: i64 = 10_000;

/// Which of the caller's entries: one session's, one front door's, or all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Which<'a> {
    pub session: Option<&'a str>,
    pub source: Option<&'a str>,
}

impl<'a> Which<'a> {
    /// A query's `session` and `source`, an empty one as absent; a source is a front door.
    pub fn new(session: Option<&'a str>, source: Option<&'a str>) -> Result<Self, Error> {
        let source = source.filter(|s| !s.is_empty());
        if let Some(s) = source.filter(|s| !["api", "walytic", "commbox"].contains(s)) {
            return Err(Error::new(
                Code::InvalidParameter,
                format!("source is api, walytic or commbox, not `{s}`"),
            ));
        }
        Ok(Which {
            session: session.filter(|s| !s.is_empty()),
            source,
        })
    }

    fn of(self, caller: &'a Caller) -> Filter<'a> {
        Filter {
            user_id: &caller.id,
            session_id: self.session,
            source: self.source,
        }
    }
}

/// A page's size and where it starts, from a query's `limit` (default 100, at most 1,000) and
/// `page` (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub limit: i64,
    pub offset: i64,
}

impl Paging {
    pub fn new(limit: Option<i64>, page: Option<i64>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(100);
        let page = page.unwrap_or(1);
        if !(1..=1000).contains(&limit) || page < 1 {
            return Err(Error::new(
                Code::InvalidParameter,
                "limit is 1 to 1000 and page starts at 1",
            ));
        }
        Ok(Paging {
            limit,
            offset: (page - 1).saturating_mul(limit),
        })
    }
}

/// A page of the caller's entries, newest first, and how many there are in all.
pub async fn page(
    app: &Services,
    caller: &Caller,
    which: Which<'_>,
    paging: Paging,
) -> Result<(Vec<Entry>, i64), Error> {
    Ok(history::page(&app.pool, which.of(caller), paging.limit, paging.offset).await?)
}

/// Deletes the caller's entries `which` selects; returns how many.
pub async fn clear(app: &Services, caller: &Caller, which: Which<'_>) -> Result<u64, Error> {
    Ok(history::clear(&app.pool, which.of(caller)).await?)
}

/// The caller's entries (newest first, at most [`EXPORT_MAX`]) written to a temporary file
/// as a table of `header` and one row of `cells` per entry. The file is written while the
/// entries are read, so memory stays flat however many there are.
pub async fn export<F>(
    app: &Services,
    caller: &Caller,
    which: Which<'_>,
    format: ResultFormat,
    header: Vec<String>,
    cells: F,
) -> Result<tempfile::NamedTempFile, Error>
where
    F: Fn(Entry) -> Vec<String>,
{
    let file = tempfile::NamedTempFile::new().map_err(Error::internal)?;
    let path = file.path().to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Vec<String>>>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let mut table = TableWriter::create(&path, format, header)?;
        while let Some(rows) = rx.blocking_recv() {
            for row in &rows {
                table.row(row)?;
            }
        }
        table.finish()
    });
    let filter = which.of(caller);
    let read = async {
        let mut last: Option<Entry> = None;
        let mut written = 0;
        while written < EXPORT_MAX {
            let batch = history::older(&app.pool, filter, last.as_ref(), EXPORT_BATCH).await?;
            let full = batch.len() as i64 == EXPORT_BATCH;
            last = batch.last().cloned();
            let rows: Vec<Vec<String>> = batch
                .into_iter()
                .take(EXPORT_MAX - written)
                .map(&cells)
                .collect();
            written += rows.len();
            // A writer that stopped has its error read below.
            if tx.send(rows).await.is_err() || !full {
                break;
            }
        }
        Ok::<_, Error>(())
    };
    let read = read.await;
    drop(tx);
    // The writer ends before the file can go, whatever happened to the reading.
    let written = writer.await.map_err(Error::internal)?;
    read?;
    written.map_err(Error::internal)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_limit_and_offset_of_a_page_from_one() {
        let p = |l, p| Paging::new(l, p).map_err(|e| e.code());
        assert_eq!(
            p(None, None),
            Ok(Paging {
                limit: 100,
                offset: 0
            })
        );
        assert_eq!(
            p(Some(10), Some(3)),
            Ok(Paging {
                limit: 10,
                offset: 20
            })
        );
        assert_eq!(
            p(Some(1000), Some(1)),
            Ok(Paging {
                limit: 1000,
                offset: 0
            })
        );
        for (l, pg) in [(Some(0), None), (Some(1001), None), (None, Some(0))] {
            assert_eq!(p(l, pg), Err(Code::InvalidParameter), "{l:?} {pg:?}");
        }
    }

    #[test]
    fn a_source_is_a_front_door_and_empty_means_any() {
        let w = Which::new(Some(""), Some("walytic")).unwrap();
        assert_eq!((w.session, w.source), (None, Some("walytic")));
        let w = Which::new(Some("s1"), Some("")).unwrap();
        assert_eq!((w.session, w.source), (Some("s1"), None));
        let e = Which::new(None, Some("sms")).unwrap_err();
        assert_eq!(e.code(), Code::InvalidParameter);
        assert_eq!(e.message(), "source is api, walytic or commbox, not `sms`");
    }
}
