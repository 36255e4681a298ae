//! Reading a child's output pipe as text pieces (for streams) or as lines (for protocols).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most text a piece holds before it is passed on without waiting for a newline.
const MAX_PIECE: usize = 64 * 1024;

/// A line of a line protocol.
#[derive(Debug, PartialEq)]
pub(crate) enum Line {
    /// A line, without its newline (and without a trailing `\r`).
    Text(String),
    /// A line longer than the limit: skipped, with its length in bytes.
    Overlong(usize),
}

/// One output pipe of a child.
pub(crate) struct Pipe<R> {
    reader: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    pub(crate) fn new(reader: R) -> Self {
        Pipe {
            reader,
            buf: Vec::with_capacity(8 * 1024),
            eof: false,
        }
    }

    /// Reads more into the buffer; `false` at end of file (or on a read error).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        self.buf.reserve(8 * 1024);
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "reading the process's output failed");
                self.eof = true;
                false
            }
        }
    }

    /// The next piece of text, `None` at end of file. Pieces end at a line end, so a line
    /// is never split (which keeps a secret on it whole for redaction), except that a
    /// partial line is passed on once the process has been quiet for `flush_after` (a
    /// prompt) or once it reaches 64 KiB.
    pub(crate) async fn next_text(&mut self, flush_after: Duration) -> Option<String> {
        loop {
            if let Some(newline) = self.buf.iter().rposition(|&b| b == b'\n') {
                return Some(self.take_text(newline + 1));
            }
            if self.buf.len() >= MAX_PIECE || (self.eof && !self.buf.is_empty()) {
                return Some(self.take_text(self.buf.len()));
            }
            if self.eof {
                return None;
            }
            if self.buf.is_empty() {
                self.fill().await;
                continue;
            }
            // `read_buf` is cancel-safe: nothing read is lost if the timer wins.
            tokio::select! {
                _ = self.fill() => {}
                () = tokio::time::sleep(flush_after) => {
                    let text = self.take_text(self.buf.len());
                    if !text.is_empty() {
                        return Some(text);
                    }
                    // Only part of a character is here: wait for the rest.
                    self.fill().await;
                }
            }
        }
    }

    /// Takes up to `len` bytes as text, leaving an incomplete trailing character (unless
    /// at end of file); invalid bytes become U+FFFD.
    fn take_text(&mut self, len: usize) -> String {
        let len = match std::str::from_utf8(&self.buf[..len]) {
            Err(error) if error.error_len().is_none() && !self.eof => error.valid_up_to(),
            _ => len,
        };
        let text = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        self.buf.drain(..len);
        text
    }

    /// The next line, `None` at end of file. A line longer than `max` bytes is skipped
    /// without holding it in memory and reported as [`Line::Overlong`].
    pub(crate) async fn next_line(&mut self, max: usize) -> Option<Line> {
        let mut skipped = 0usize;
        loop {
            if let Some(newline) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=newline).collect();
                if skipped > 0 || line.len() > max + 1 {
                    return Some(Line::Overlong(skipped + line.len() - 1));
                }
                let mut text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if text.ends_with('\r') {
                    text.pop();
                }
                return Some(Line::Text(text));
            }
            if self.buf.len() > max {
                skipped += self.buf.len();
                self.buf.clear();
            }
            if !self.fill().await {
                if skipped > 0 {
                    return Some(Line::Overlong(skipped + self.buf.len()));
                }
                if self.buf.is_empty() {
                    return None;
                }
                let text = String::from_utf8_lossy(&self.buf).into_owned();
                self.buf.clear();
                return Some(Line::Text(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn text_pieces_end_at_line_ends_and_keep_characters_whole() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut pipe = Pipe::new(reader);
        use tokio::io::AsyncWriteExt;
        writer.write_all(b"one\ntw").await.unwrap();
        assert_eq!(
            pipe.next_text(Duration::from_secs(60)).await.unwrap(),
            "one\n"
        );
        // A prompt without a newline shows up after the quiet period.
        assert_eq!(
            pipe.next_text(Duration::from_millis(10)).await.unwrap(),
            "tw"
        );
        // Half of "é" waits for the other half.
        writer.write_all(&[0xc3]).await.unwrap();
        let rest = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer.write_all(&[0xa9, b'\n']).await.unwrap();
            drop(writer);
        };
        let (text, ()) = tokio::join!(pipe.next_text(Duration::from_millis(5)), rest);
        assert_eq!(text.unwrap(), "é\n");
        assert_eq!(pipe.next_text(Duration::from_millis(5)).await, None);
    }

    #[tokio::test]
    async fn overlong_lines_are_skipped_and_measured() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend(b"\nafter\r\nlast");
        let mut pipe = Pipe::new(&input[..]);
        assert_eq!(pipe.next_line(1000).await, Some(Line::Text("short".into())));
        assert_eq!(pipe.next_line(1000).await, Some(Line::Overlong(100_000)));
        assert_eq!(pipe.next_line(1000).await, Some(Line::Text("after".into())));
        assert_eq!(pipe.next_line(1000).await, Some(Line::Text("last".into())));
        assert_eq!(pipe.next_line(1000).await, None);
    }
}
