//! Progress bars for `import` and `export`, drawn on stderr only when stderr is a terminal
//! and the output is not JSON: a pipe, a file or a script sees nothing of them.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr, or a hidden one that draws nothing.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Whether a bar would be seen: stderr is a terminal and the bar is not `quiet` (the
    /// output is not JSON).
    pub fn wanted(quiet: bool) -> bool {
        !quiet && io::stderr().is_terminal()
    }

    /// A bar drawn with `template` (a spinner's when the length is unknown), or a hidden
    /// one when `quiet` or stderr is not a terminal.
    fn new(quiet: bool, length: Option<u64>, template: &str) -> Self {
        if !Self::wanted(quiet) {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = match length {
            Some(length) => ProgressBar::new(length),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }

    /// The bar of an import: bytes read of the input, against its size when the input is
    /// a file (standard input redirected from one), else a count.
    pub fn import(json: bool) -> Self {
        match stdin_size() {
            Some(size) => Self::new(
                json,
                Some(size),
                "import: read {bytes}/{total_bytes} [{bar:30}] {msg}",
            ),
            None => Self::new(json, None, "import: read {bytes} {spinner} {msg}"),
        }
    }

    /// The bar of an export: lines written. None when the lines themselves go to the
    /// terminal: the bar would be drawn over them.
    pub fn export(json: bool) -> Self {
        let to_terminal = io::stdout().is_terminal();
        Self::new(
            json || to_terminal,
            None,
            "export: wrote {pos} lines {spinner} {msg}",
        )
    }

    /// `input`, counting on the bar the bytes read from it; at its end the bar says the
    /// store is being written.
    pub fn reader<R: BufRead>(&self, input: R) -> CountingReader<R> {
        CountingReader {
            input,
            bar: self.bar.clone(),
        }
    }

    /// `output`, counting on the bar the lines written to it.
    pub fn writer<W: Write>(&self, output: W) -> CountingWriter<W> {
        CountingWriter {
            output,
            bar: self.bar.clone(),
        }
    }

    /// Leaves the bar showing its final count with `message` (`done`, `failed`).
    pub fn finish(&self, message: &'static str) {
        self.bar.finish_with_message(message);
    }
}

/// The size of standard input when it is a regular file, else `None`.
fn stdin_size() -> Option<u64> {
    let descriptor = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(descriptor).metadata().ok()?;
    metadata.is_file().then_some(metadata.len())
}

/// A reader that counts the bytes read on a progress bar ([`Progress::reader`]).
#[derive(Debug)]
pub struct CountingReader<R> {
    input: R,
    bar: ProgressBar,
}

impl<R: BufRead> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.input.read(buf)?;
        self.counted(read);
        Ok(read)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let buffer = self.input.fill_buf()?;
        if buffer.is_empty() {
            self.bar.set_message("checked; writing to the store");
        }
        Ok(buffer)
    }

    fn consume(&mut self, amount: usize) {
        self.input.consume(amount);
        self.counted(amount);
    }
}

impl<R> CountingReader<R> {
    fn counted(&self, bytes: usize) {
        self.bar.inc(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

/// A writer that counts the lines written on a progress bar ([`Progress::writer`]).
#[derive(Debug)]
pub struct CountingWriter<W> {
    output: W,
    bar: ProgressBar,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.output.write(buf)?;
        let lines = buf[..written].iter().filter(|&&b| b == b'\n').count();
        self.bar.inc(u64::try_from(lines).unwrap_or(u64::MAX));
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_passes_everything_through() {
        let progress = Progress::new(true, None, "{pos}");
        let mut written = Vec::new();
        {
            let mut writer = progress.writer(&mut written);
            writer.write_all(b"one\ntwo\nthree").unwrap();
            writer.flush().unwrap();
        }
        assert_eq!(written, b"one\ntwo\nthree");
        assert_eq!(progress.bar.position(), 2);

        let progress = Progress::new(true, None, "{bytes}");
        let mut reader = progress.reader(&b"line one\nline two\n"[..]);
        let lines: Vec<String> = (&mut reader).lines().map(Result::unwrap).collect();
        assert_eq!(lines, ["line one", "line two"]);
        assert_eq!(progress.bar.position(), 18);
    }
}
