//! Newline-framed reading of an agent's stdout with a bounded line length (SPEC §10.1: 10 MB)
//! and partial-line buffering (SPEC §10.3). Cancel-safe: a `next_line` future dropped by a
//! `select!` loses no bytes, because everything already read lives in the reader.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line accepted from an agent, in bytes (SPEC §10.1).
pub const MAX_LINE_BYTES: usize = 10 * 1024 * 1024;

/// One framed line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line without its `\n` (and without a trailing `\r`). The final unterminated
    /// line at EOF is also returned this way.
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded.
    Oversized {
        /// How many bytes it had.
        len: usize,
    },
}

pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
    oversized: Option<usize>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            buf: Vec::new(),
            max,
            oversized: None,
        }
    }

    /// The next line, or `None` at EOF.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                return Ok(self.finish_at_eof());
            }
            let (take, complete) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let data = if complete { &chunk[..take - 1] } else { chunk };
            match self.oversized.as_mut() {
                Some(len) => *len += data.len(),
                None if self.buf.len() + data.len() > self.max => {
                    self.oversized = Some(self.buf.len() + data.len());
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(data),
            }
            self.inner.consume(take);
            if complete {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        if let Some(len) = self.oversized.take() {
            return Line::Oversized { len };
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Line::Complete(line)
    }

    fn finish_at_eof(&mut self) -> Option<Line> {
        if self.oversized.is_none() && self.buf.is_empty() {
            return None;
        }
        Some(self.take_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_unterminated_tail() {
        assert_eq!(
            lines(b"a\r\nbc\n\ntail", 10).await,
            [
                Line::Complete(b"a".to_vec()),
                Line::Complete(b"bc".to_vec()),
                Line::Complete(Vec::new()),
                Line::Complete(b"tail".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn oversized_lines_are_reported_and_reading_continues() {
        assert_eq!(
            lines(b"0123456789abc\nok\n", 8).await,
            [Line::Oversized { len: 13 }, Line::Complete(b"ok".to_vec())]
        );
    }

    #[tokio::test]
    async fn partial_writes_are_buffered_until_the_newline() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = LineReader::new(rx, 1024);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(b"{\"a\":").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            tx.write_all(b"1}\n").await.unwrap();
        });
        let line = reader.next_line().await.unwrap();
        assert_eq!(line, Some(Line::Complete(b"{\"a\":1}".to_vec())));
        writer.await.unwrap();
        assert_eq!(reader.next_line().await.unwrap(), None);
    }
}
